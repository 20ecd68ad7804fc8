# ejabberd: Mnesia, clustered by pillar, lab TLS, PROXY protocol behind the balancer;
# archive and offline tables in the storage pillar names (ejabberd:mnesia_storage);
# the pillar's rooms, archived, with their members' bookmarks.
include:
  - ejabberd.package
  - ejabberd.config
  - ejabberd.service
  - ejabberd.cluster
  - ejabberd.storage
  - ejabberd.users
  - ejabberd.rooms

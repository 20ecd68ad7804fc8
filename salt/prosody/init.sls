# prosody: XMPP server on local MariaDB (SQL storage), lab TLS, users from pillar;
# the pillar's rooms, archived, with their members' bookmarks.
include:
  - prosody.package
  - prosody.config
  - prosody.service
  - prosody.users
  - prosody.rooms

# ejabberd: Mnesia, clustered by pillar, TLS files from pillar, PROXY protocol optional.
include:
  - ejabberd.package
  - ejabberd.config
  - ejabberd.service
  - ejabberd.cluster
  - ejabberd.users

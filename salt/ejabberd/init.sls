# ejabberd: Mnesia, clustered by pillar, lab TLS, PROXY protocol behind the balancer.
include:
  - ejabberd.package
  - ejabberd.config
  - ejabberd.service
  - ejabberd.cluster
  - ejabberd.users

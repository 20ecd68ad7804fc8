# haproxy: TCP balancer for 5222/5223 in front of the ejabberd cluster.
include:
  - haproxy.package
  - haproxy.config
  - haproxy.service

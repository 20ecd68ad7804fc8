# Role: ejabberd cluster node (Mnesia). Node name, distribution address and the
# cluster members derive from the lab pillar (lab:cluster:ejabberd, lab:hosts);
# cookie and users from secrets.sls. haproxy (lb) is in front: PROXY protocol on.
roles:
  - ejabberd
ejabberd:
  proxy_protocol: true

# Role: haproxy in TCP mode in front of lab:cluster:ejabberd (5222, 5223, send-proxy).
roles:
  - haproxy

{#- Role: haproxy in TCP mode (5222, 5223, send-proxy) in front of the ejabberd
    cluster: one backend server per member, at its manifest address; its XMPP-level
    health check verifies the nodes' certificates with the lab CA (labtls.ca); plus
    one HTTP File Upload port per member that forwards to that member only (its
    files live there, and its upload URLs name that port). #}
{%- from 'lab/map.jinja' import lab, tls with context %}
roles:
  - haproxy
labtls:
  ca_trust_file: {{ tls.ca_file }}
haproxy:
  servers:
{%- for name in lab.cluster.get('ejabberd', []) %}
    {{ name }}: {{ lab.hosts[name] }}
{%- endfor %}
  check_domain: {{ lab.domains.ejabberd }}
  check_ca_file: {{ tls.ca_file }}
  ca_sls:
    - labtls.ca
  frontends:
{%- for name, port in lab.upload.lb_ports | dictsort %}
    upload-{{ name }}:
      port: {{ port }}
      backend_port: {{ lab.upload.node_port }}
      servers: [{{ name }}]
      # HTTPS, not XMPP: the check is a verified TLS handshake (a connect alone
      # succeeds on a wedged node: the kernel accepts for it).
      check: tcp
      tls: true
{%- endfor %}
# What this machine answers, and to whom (salt/firewall; SSH from anywhere is its
# default). One service per line: name: {ports: [...], sources: [...]}, [] = anywhere.
firewall:
  services:
    xmpp-client: {ports: [5222, 5223], sources: []}
    http-upload: {ports: {{ lab.upload.lb_ports.values() | sort | list | json }}, sources: []}

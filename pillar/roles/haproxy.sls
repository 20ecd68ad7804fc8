{#- Role: haproxy in TCP mode (5222, 5223, send-proxy) in front of the ejabberd
    cluster: one backend server per member, at its manifest address; its XMPP-level
    health check verifies the nodes' certificates with the lab CA (labtls.ca). #}
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
# What this machine answers, and to whom (salt/firewall; SSH from anywhere is its
# default). One service per line: name: {ports: [...], sources: [...]}, [] = anywhere.
firewall:
  services:
    xmpp-client: {ports: [5222, 5223], sources: []}

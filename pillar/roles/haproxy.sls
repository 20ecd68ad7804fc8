{#- Role: haproxy in TCP mode (5222, 5223, send-proxy) in front of the ejabberd
    cluster: one backend server per member, at its manifest address. #}
{%- from 'lab/map.jinja' import lab with context %}
roles:
  - haproxy
haproxy:
  servers:
{%- for name in lab.cluster.get('ejabberd', []) %}
    {{ name }}: {{ lab.hosts[name] }}
{%- endfor %}

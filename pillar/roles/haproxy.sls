{#- Role: haproxy in TCP mode (5222, 5223, send-proxy) in front of the ejabberd
    cluster: one backend server per member, at its manifest address; plus one HTTP
    File Upload port per member that forwards to that member only (its files live
    there, and its upload URLs name that port). #}
{%- from 'lab/map.jinja' import lab with context %}
roles:
  - haproxy
haproxy:
  servers:
{%- for name in lab.cluster.get('ejabberd', []) %}
    {{ name }}: {{ lab.hosts[name] }}
{%- endfor %}
  frontends:
{%- for name, port in lab.upload.lb_ports | dictsort %}
    upload-{{ name }}:
      port: {{ port }}
      backend_port: {{ lab.upload.node_port }}
      servers: [{{ name }}]
{%- endfor %}

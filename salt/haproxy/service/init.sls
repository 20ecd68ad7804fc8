{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ '/map.jinja' import haproxy with context %}
include:
  - haproxy.config

haproxy-service-running:
  service.running:
    - name: {{ haproxy.service }}
    - enable: True
    - reload: True
    - watch:
      - file: haproxy-config-tcp-passthrough-to-cluster

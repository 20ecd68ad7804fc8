{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ '/map.jinja' import haproxy with context %}
include:
  - haproxy.package
{%- for sls in haproxy.ca_sls %}
  - {{ sls }}
{%- endfor %}

haproxy-config-tcp-passthrough-to-cluster:
  file.managed:
    - name: {{ haproxy.config_file }}
    - source: salt://haproxy/files/haproxy.cfg.jinja
    - template: jinja
    - context:
        haproxy: {{ haproxy | json }}
    - user: root
    - group: root
    - mode: '0644'
    - check_cmd: haproxy -c -f
    - require:
      - pkg: haproxy-package-installed
{%- for sls in haproxy.ca_sls %}
      - sls: {{ sls }}
{%- endfor %}

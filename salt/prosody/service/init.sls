{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ '/map.jinja' import prosody with context %}
include:
  - {{ tplroot }}.config

prosody-service-running:
  service.running:
    - name: {{ prosody.service }}
    - enable: True
    - watch:
      - file: prosody-config-file-managed
      - group: prosody-config-user-may-read-tls-key
{%- for sls in prosody.certificate_sls %}
      - sls: {{ sls }}
{%- endfor %}

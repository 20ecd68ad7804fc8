{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ '/map.jinja' import prosody with context %}
include:
  - {{ tplroot }}.package
{%- for sls in prosody.certificate_sls %}
  - {{ sls }}
{%- endfor %}

prosody-config-user-may-read-tls-key:
  group.present:
    - name: {{ prosody.key_group }}
    - addusers:
      - {{ prosody.user }}
    - require:
      - pkg: prosody-package-server-and-sql-driver-installed
{%- for sls in prosody.certificate_sls %}
      - sls: {{ sls }}
{%- endfor %}

prosody-config-file-managed:
  file.managed:
    - name: {{ prosody.config_file }}
    - source: salt://prosody/files/prosody.cfg.lua.jinja
    - template: jinja
    - context:
        prosody: {{ prosody | json }}
    - user: root
    - group: {{ prosody.group }}
    - mode: '0640'
    - show_changes: False
    - require:
      - pkg: prosody-package-server-and-sql-driver-installed

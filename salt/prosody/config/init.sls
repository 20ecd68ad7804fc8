{%- from 'prosody/map.jinja' import prosody with context %}
include:
  - prosody.package
  - labtls.certificates

prosody-config-user-may-read-tls-key:
  group.present:
    - name: {{ prosody.key_group }}
    - addusers:
      - {{ prosody.user }}
    - require:
      - pkg: prosody-package-server-and-sql-driver-installed
      - pkg: labtls-package-tools-installed

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

{%- from 'mariadb/map.jinja' import mariadb with context %}
include:
  - mariadb.package

mariadb-config-bound-to-loopback:
  file.managed:
    - name: {{ mariadb.config_file }}
    - source: salt://mariadb/files/server.cnf.jinja
    - template: jinja
    - context:
        mariadb: {{ mariadb | json }}
    - user: root
    - group: root
    - mode: '0644'
    - require:
      - pkg: mariadb-package-server-installed

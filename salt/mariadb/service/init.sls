{%- from 'mariadb/map.jinja' import mariadb with context %}
include:
  - mariadb.config

mariadb-service-running:
  service.running:
    - name: {{ mariadb.service }}
    - enable: True
    - watch:
      - file: mariadb-config-bound-to-loopback

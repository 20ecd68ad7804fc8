{%- from 'mariadb/map.jinja' import mariadb with context %}

mariadb-package-server-installed:
  pkg.installed:
    - pkgs: {{ mariadb.pkgs | json }}
    - refresh: False
    - install_recommends: False

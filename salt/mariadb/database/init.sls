{#- Databases, users and grants with saltext-mysql (root over the unix socket). #}
{%- from 'mariadb/map.jinja' import mariadb with context %}
{%- set conn = mariadb.connection %}
include:
  - mariadb.service
{%- for name, db in mariadb.databases | dictsort %}

mariadb-database-{{ name }}-present:
  mysql_database.present:
    - name: {{ name }}
    - character_set: {{ db.get('character_set', 'utf8mb4') }}
    - collate: {{ db.get('collate', 'utf8mb4_unicode_ci') }}
{%-   for k, v in conn | dictsort %}
    - {{ k }}: {{ v }}
{%-   endfor %}
    - require:
      - service: mariadb-service-running
{%- endfor %}
{%- for name, user in mariadb.users | dictsort %}

mariadb-user-{{ name }}-present:
  mysql_user.present:
    - name: {{ name }}
    - host: {{ user.get('host', 'localhost') }}
    - password: {{ user.password | json }}
{%-   for k, v in conn | dictsort %}
    - {{ k }}: {{ v }}
{%-   endfor %}
    - require:
      - service: mariadb-service-running
{%-   for database, grant in user.get('grants', {}) | dictsort %}

mariadb-user-{{ name }}-granted-{{ grant | replace(' ', '-') | lower }}-on-{{ database }}:
  mysql_grants.present:
    - grant: {{ grant }}
    - database: {{ database }}.*
    - user: {{ name }}
    - host: {{ user.get('host', 'localhost') }}
{%-     for k, v in conn | dictsort %}
    - {{ k }}: {{ v }}
{%-     endfor %}
    - require:
      - mysql_user: mariadb-user-{{ name }}-present
{%-     if database in mariadb.databases %}
      - mysql_database: mariadb-database-{{ database }}-present
{%-     endif %}
{%-   endfor %}
{%- endfor %}

{#- Users from pillar, registered idempotently. The password reaches prosodyctl on
    stdin only (never argv, never logged). A marker with a SHA-256 of jid+password
    lets a rotated password (lab/secrets.py --rotate) be set again; the account
    itself is checked in the SQL store, so a lost account is re-created. #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ '/map.jinja' import prosody with context %}
include:
  - {{ tplroot }}.service
{%- for sls in prosody.database_sls %}
  - {{ sls }}
{%- endfor %}

prosody-users-marker-directory-present:
  file.directory:
    - name: {{ prosody.marker_dir }}
    - user: root
    - group: root
    - mode: '0700'
    - require:
      - pkg: prosody-package-server-and-sql-driver-installed
{%- for name, user in prosody.users | dictsort %}
{%-   set jid = name ~ '@' ~ prosody.domain %}
{%-   set digest = salt['hashutil.sha256_digest'](jid ~ ':' ~ user.password) %}
{%-   set marker = prosody.marker_dir ~ '/' ~ jid %}
{%-   set sql = "SELECT COUNT(*) FROM prosody WHERE host='" ~ prosody.domain ~ "' AND user='" ~ name ~ "' AND store='accounts'" %}
{%-   set exists = 'test "$(mariadb -NB ' ~ prosody.sql.database ~ ' -e "' ~ sql ~ '" 2>/dev/null)" -gt 0' %}

prosody-user-{{ jid }}-registered:
  cmd.run:
    - name: >-
        if {{ exists }}; then prosodyctl passwd {{ jid }}; else prosodyctl adduser {{ jid }}; fi
        >/dev/null && {{ exists }} && echo {{ digest }} > {{ marker }}
    - stdin: {{ (user.password ~ '\n' ~ user.password ~ '\n') | json }}
    - output_loglevel: quiet
    - unless: {{ (exists ~ ' && grep -qx ' ~ digest ~ ' ' ~ marker) | json }}
    {#- Right after prosody's first start the first registration sometimes fails (seen
        once in a few first applies since one apt transaction made the apply faster):
        prosody sets up its SQL store as it starts, beside this prosodyctl. #}
    - retry:
        attempts: 3
        interval: 2
    - require:
      - service: prosody-service-running
      - file: prosody-users-marker-directory-present
{%-   for sls in prosody.database_sls %}
      - sls: {{ sls }}
{%-   endfor %}
{%- endfor %}

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
    {#- prosody 13's prosodyctl adduser/passwd talk to the running server over its admin
        socket, which prosody (Type=simple: "started" at once) opens only once it has
        loaded; on a slow machine the first tries fail. So the registration is tried
        until it holds, for at most start_timeout seconds, then fails with prosodyctl's
        last line. The password is read once from stdin and handed to each try by
        printf (a shell builtin: never in a process's argv). #}
    - name: >-
        read -r pw;
        end=$(( $(date +%s) + {{ prosody.start_timeout | int }} ));
        until out=$( { if {{ exists }}; then printf '%s\n%s\n' "$pw" "$pw" | prosodyctl passwd {{ jid }};
        else printf '%s\n%s\n' "$pw" "$pw" | prosodyctl adduser {{ jid }}; fi; } 2>&1 ) && {{ exists }}; do
        if [ "$(date +%s)" -ge "$end" ]; then
        echo "{{ jid }}: not registered within {{ prosody.start_timeout | int }} s: $(printf '%s' "$out" | tail -n 1)" >&2;
        exit 1; fi; sleep 2; done;
        echo {{ digest }} > {{ marker }}
    - stdin: {{ (user.password ~ '\n') | json }}
    - output_loglevel: quiet
    - unless: {{ (exists ~ ' && grep -qx ' ~ digest ~ ' ' ~ marker) | json }}
    - require:
      - service: prosody-service-running
      - file: prosody-users-marker-directory-present
{%-   for sls in prosody.database_sls %}
      - sls: {{ sls }}
{%-   endfor %}
{%- endfor %}

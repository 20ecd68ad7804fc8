{#- Users from pillar, registered once on the seed node (Mnesia replicates them).
    Passwords go to the local ReST API (loopback only) on the API client's stdin: never argv,
    never logged. A marker with a SHA-256 of jid+password lets a rotated password
    be set again. #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ '/map.jinja' import ejabberd with context %}
include:
  - {{ tplroot }}.cluster
{%- if ejabberd.is_seed %}
{%-   set api = ejabberd.api_client %}

ejabberd-users-marker-directory-present:
  file.directory:
    - name: {{ ejabberd.marker_dir }}
    - user: root
    - group: root
    - mode: '0700'
    - require:
      - pkg: ejabberd-package-installed
{%-   for name, user in ejabberd.users | dictsort %}
{%-     set jid = name ~ '@' ~ ejabberd.domain %}
{%-     set digest = salt['hashutil.sha256_digest'](jid ~ ':' ~ user.password) %}
{%-     set marker = ejabberd.marker_dir ~ '/' ~ jid %}
{%-     set query = {'host': ejabberd.domain} | json %}
{%-     set exists = "echo '" ~ query ~ "' | " ~ api ~ " registered_users | grep -q '\"" ~ name ~ "\"'" %}
{%-     set register = {'user': name, 'host': ejabberd.domain, 'password': user.password} | json %}
{%-     set change = {'user': name, 'host': ejabberd.domain, 'newpass': user.password} | json %}

ejabberd-user-{{ jid }}-registered:
  cmd.run:
    - name: >-
        read -r register; read -r change;
        if {{ exists }}; then printf '%s' "$change" | {{ api }} change_password >/dev/null;
        else printf '%s' "$register" | {{ api }} register >/dev/null; fi &&
        {{ exists }} && echo {{ digest }} > {{ marker }}
    - stdin: {{ (register ~ '\n' ~ change ~ '\n') | json }}
    - output_loglevel: quiet
    - unless: {{ (exists ~ ' && grep -qx ' ~ digest ~ ' ' ~ marker) | json }}
    - require:
      - cmd: ejabberd-service-node-started
      - file: ejabberd-users-marker-directory-present
{%-   endfor %}
{%- endif %}

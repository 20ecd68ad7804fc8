{#- This node's copy of the archive and offline tables in the storage type pillar names
    (ejabberd:mnesia_storage), changed in place on the running node: a fresh node
    created them with the modules' default (disc_only_copies) whatever ejabberd.schema
    says; a node provisioned before this state has them full. After a cluster join the
    joining node already has its copies as ejabberd.schema says (ejabberd applies it
    when it restarts into the cluster), so this runs after ejabberd.cluster and then
    changes nothing. The check is the local ReST API (no Erlang node to boot). #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ '/map.jinja' import ejabberd with context %}
include:
  - {{ tplroot }}.config
  - {{ tplroot }}.service
  - {{ tplroot }}.cluster

ejabberd-storage-tool-installed:
  file.managed:
    - name: {{ ejabberd.mnesia_storage_tool }}
    - source: salt://ejabberd/files/ejabberd-mnesia-storage.escript.jinja
    - template: jinja
    - context:
        ejabberd: {{ {'node': ejabberd.node, 'dist_port': ejabberd.dist_port, 'dist_flags': ejabberd.dist_flags,
                      'connect_timeout': ejabberd.start_timeout,
                      'home': ejabberd.cookie_file.rsplit('/', 1)[0]} | json }}
    - user: root
    - group: root
    - mode: '0755'
{%- set tables = ejabberd.mnesia_storage | dictsort %}
{%- if tables %}
{%-   set checks = [] %}
{%-   for table, type in tables %}
{%-     do checks.append("echo '" ~ {'table': table} | json ~ "' | " ~ ejabberd.api_client
                         ~ " mnesia_table_info | grep -qF '{storage_type," ~ type ~ "}'") %}
{%-   endfor %}
{%-   set home = ejabberd.cookie_file.rsplit('/', 1)[0] %}

ejabberd-storage-mnesia-tables-as-pillar-says:
  cmd.run:
    - name: >-
        runuser -u {{ ejabberd.user }} -- env HOME={{ home }} {{ ejabberd.mnesia_storage_tool }}
        {{ tables | map('join', '=') | join(' ') }}
    # Erlang needs a working directory the ejabberd user can read (Salt's is /root).
    - cwd: {{ home }}
    - unless: {{ checks | join(' && ') | json }}
    - require:
      - cmd: ejabberd-service-node-started
      - file: ejabberd-storage-tool-installed
      - file: ejabberd-config-mnesia-schema
      - sls: ejabberd.cluster
{%- endif %}

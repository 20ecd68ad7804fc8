{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ '/map.jinja' import ejabberd with context %}
include:
  - {{ tplroot }}.package
{%- for sls in ejabberd.certificate_sls %}
  - {{ sls }}
{%- endfor %}

ejabberd-config-node-name-and-distribution:
  file.managed:
    - name: {{ ejabberd.ctl_config_file }}
    - source: salt://ejabberd/files/ejabberdctl.cfg.jinja
    - template: jinja
    - context:
        ejabberd: {{ ejabberd | json }}
    - user: root
    - group: root
    - mode: '0644'
    - require:
      - pkg: ejabberd-package-installed

{#- A running node must be stopped with the cookie it was started with (ejabberdctl
    reads the cookie file): stop it before a new cookie (lab/secrets.py --rotate) lands. #}
ejabberd-config-node-stopped-before-cookie-change:
  service.dead:
    - name: {{ ejabberd.service }}
    - prereq:
      - file: ejabberd-config-erlang-cookie

ejabberd-config-erlang-cookie:
  file.managed:
    - name: {{ ejabberd.cookie_file }}
    - contents_pillar: ejabberd:cookie
    - contents_newline: False
    - user: {{ ejabberd.user }}
    - group: {{ ejabberd.group }}
    - mode: '0400'
    - show_changes: False
    - require:
      - pkg: ejabberd-package-installed

{%- if ejabberd.key_group %}

ejabberd-config-user-may-read-tls-key:
  group.present:
    - name: {{ ejabberd.key_group }}
    - addusers:
      - {{ ejabberd.user }}
    - require:
      - pkg: ejabberd-package-installed
{%-   for sls in ejabberd.certificate_sls %}
      - sls: {{ sls }}
{%-   endfor %}
{%- endif %}

ejabberd-config-distribution-tls-options:
{%- if ejabberd.dist_tls.enabled %}
  file.managed:
    - name: {{ ejabberd.dist_tls.optfile }}
    - source: salt://ejabberd/files/inet_tls_dist.conf.jinja
    - template: jinja
    - context:
        ejabberd: {{ ejabberd | json }}
    - user: root
    - group: {{ ejabberd.group }}
    - mode: '0640'
    - require:
      - pkg: ejabberd-package-installed
{%- else %}
  file.absent:
    - name: {{ ejabberd.dist_tls.optfile }}
{%- endif %}

{#- This formula's ejabberd modules (files/modules): compiled on the node against its
    own ejabberd's and xmpp library's headers, before ejabberd.yml names them (ejabberd
    refuses a config that names a module it cannot load). #}
{%- set include_dirs = '/usr/lib/*/ejabberd-*/include /usr/lib/erlang/lib/p1_xmpp-*/include' %}
{%- for module in ['mod_durable_ack', 'mod_quorum'] %}
{%-   set src = ejabberd.modules_dir ~ '/src/' ~ module ~ '.erl' %}
{%-   set beam = ejabberd.modules_dir ~ '/ebin/' ~ module ~ '.beam' %}

ejabberd-config-module-{{ module }}-source:
  file.managed:
    - name: {{ src }}
    - source: salt://ejabberd/files/modules/{{ module }}.erl
    - makedirs: True
    - user: root
    - group: root
    - mode: '0644'

ejabberd-config-module-{{ module }}-compiled:
  cmd.run:
    - name: >-
        mkdir -p {{ ejabberd.modules_dir }}/ebin &&
        erlc -o {{ ejabberd.modules_dir }}/ebin
        $(for d in {{ include_dirs }}; do printf -- '-I %s ' "$d"; done) {{ src }}
    - unless: test {{ beam }} -nt {{ src }}
    - require:
      - pkg: ejabberd-package-installed
      - file: ejabberd-config-module-{{ module }}-source
    - require_in:
      - file: ejabberd-config-file-managed
{%- endfor %}

ejabberd-config-file-managed:
  file.managed:
    - name: {{ ejabberd.config_file }}
    - source: salt://ejabberd/files/ejabberd.yml.jinja
    - template: jinja
    - context:
        ejabberd: {{ ejabberd | json }}
    - user: root
    - group: {{ ejabberd.group }}
    - mode: '0640'
    - require:
      - pkg: ejabberd-package-installed

{#- Mnesia storage per table for every later start and cluster join (ejabberd reads
    ejabberd.schema from Mnesia's directory when it starts). No restart on change:
    ejabberd.storage converts the running node in place, which a restart would do
    inside ejabberd's start, before the API answers. #}
{%- set types = ['ram_copies', 'disc_copies', 'disc_only_copies'] %}
{%- for table, type in ejabberd.mnesia_storage | dictsort %}
{%-   if type not in types %}
{{ raise('ejabberd:mnesia_storage:' ~ table ~ ': ' ~ type ~ ' is not one of ' ~ types | join(', ')) }}
{%-   endif %}
{%- endfor %}
ejabberd-config-mnesia-schema:
  file.managed:
    - name: {{ ejabberd.spool_dir }}/ejabberd.schema
    - source: salt://ejabberd/files/ejabberd.schema.jinja
    - template: jinja
    - context:
        ejabberd: {{ {'mnesia_storage': ejabberd.mnesia_storage} | json }}
    - user: root
    - group: {{ ejabberd.group }}
    - mode: '0644'
    - require:
      - pkg: ejabberd-package-installed

ejabberd-config-systemd-dropin-plain-service:
  file.managed:
    - name: {{ ejabberd.systemd_dropin }}
    - source: salt://ejabberd/files/ejabberd-systemd.conf.jinja
    - template: jinja
    - makedirs: True
    - mode: '0644'

ejabberd-config-epmd-socket-loopback-only:
  file.managed:
    - name: {{ ejabberd.epmd_dropin }}
    - source: salt://ejabberd/files/epmd-socket.conf.jinja
    - template: jinja
    - context:
        ejabberd: {{ ejabberd | json }}
    - makedirs: True
    - mode: '0644'

ejabberd-config-systemd-reloaded:
  cmd.run:
    - name: systemctl daemon-reload
    - onchanges:
      - file: ejabberd-config-systemd-dropin-plain-service
      - file: ejabberd-config-epmd-socket-loopback-only

ejabberd-config-local-api-client-installed:
  file.managed:
    - name: {{ ejabberd.api_client }}
    - source: salt://ejabberd/files/ejabberd-api.py
    - template: jinja
    - context:
        ejabberd: {{ ejabberd | json }}
    - user: root
    - group: root
    - mode: '0755'

{#- dpkg would start ejabberd at install as ejabberd@localhost, and Mnesia binds its
    schema to that node name. A policy-rc.d (ours, marked) keeps it from starting
    during the first install only; an existing policy-rc.d is left alone.
    `order: 1` puts the guard ahead of every pkg state of the highstate, not only
    ours: with `state_aggregate` for pkg (lab/minion) the ejabberd package is installed
    by whichever pkg state runs first, and Salt checks only that state's requisites. #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ '/map.jinja' import ejabberd with context %}
{%- set installed = "dpkg-query -W -f='${Status}' ejabberd 2>/dev/null | grep -q 'ok installed'" %}
{%- set policy = '/usr/sbin/policy-rc.d' %}
{%- set marker = 'xmpp-tool salt/ejabberd: no daemon starts while ejabberd is installed' %}

{#- cmd.run, not file.managed + unless: Salt 3008 loads every state module to look
    for file.mod_run_check when a non-cmd state has unless/onlyif (~3 s per run). #}
ejabberd-package-daemon-start-blocked-during-install:
  cmd.run:
    - name: {{ ("printf '#!/bin/sh\\n# " ~ marker ~ "\\nexit 101\\n' > " ~ policy ~ " && chmod 0755 " ~ policy) | json }}
    - unless: {{ (installed ~ ' || test -e ' ~ policy) | json }}
    - order: 1

ejabberd-package-installed:
  pkg.installed:
    - pkgs: {{ ejabberd.pkgs | json }}
    - refresh: False
    - install_recommends: False
    - require:
      - cmd: ejabberd-package-daemon-start-blocked-during-install

ejabberd-package-daemon-start-unblocked:
  cmd.run:
    - name: rm -f {{ policy }}
    - onlyif: {{ ("grep -qs '" ~ marker ~ "' " ~ policy) | json }}
    - require:
      - pkg: ejabberd-package-installed

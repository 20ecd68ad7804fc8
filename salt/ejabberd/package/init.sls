{#- dpkg would start ejabberd at install as ejabberd@localhost, and Mnesia binds its
    schema to that node name. A policy-rc.d (ours, marked) keeps it from starting
    during the first install only; an existing policy-rc.d is left alone. #}
{%- from 'ejabberd/map.jinja' import ejabberd with context %}
{%- set installed = "dpkg-query -W -f='${Status}' ejabberd 2>/dev/null | grep -q 'ok installed'" %}

ejabberd-package-daemon-start-blocked-during-install:
  file.managed:
    - name: /usr/sbin/policy-rc.d
    - contents: |
        #!/bin/sh
        # xmpp-tool salt/ejabberd: no daemon starts while ejabberd is installed.
        exit 101
    - mode: '0755'
    - unless: {{ installed }} || test -e /usr/sbin/policy-rc.d

ejabberd-package-installed:
  pkg.installed:
    - pkgs: {{ ejabberd.pkgs | json }}
    - refresh: False
    - install_recommends: False
    - require:
      - file: ejabberd-package-daemon-start-blocked-during-install

ejabberd-package-daemon-start-unblocked:
  file.absent:
    - name: /usr/sbin/policy-rc.d
    - onlyif: grep -q 'xmpp-tool salt/ejabberd' /usr/sbin/policy-rc.d
    - require:
      - pkg: ejabberd-package-installed

{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ '/map.jinja' import ejabberd with context %}
{%- from tplroot ~ '/libwait.jinja' import wait_until %}
{%- set api_up = ejabberd.api_client ~ ' status </dev/null >/dev/null' %}
include:
  - {{ tplroot }}.config

{#- A changed epmd socket only takes effect after the socket is re-created; ejabberd
    (which requires epmd) is started again right below. #}
ejabberd-service-epmd-socket-rebound:
  cmd.run:
    - name: systemctl stop epmd.service epmd.socket && systemctl start epmd.socket
    - onchanges:
      - file: ejabberd-config-epmd-socket-loopback-only
    - require:
      - cmd: ejabberd-config-systemd-reloaded

ejabberd-service-running:
  service.running:
    - name: {{ ejabberd.service }}
    - enable: True
    - require:
      - cmd: ejabberd-config-systemd-reloaded
      - cmd: ejabberd-service-epmd-socket-rebound
      - cmd: ejabberd-package-daemon-start-unblocked
      - file: ejabberd-config-mnesia-schema
    - watch:
      - file: ejabberd-config-node-name-and-distribution
      - file: ejabberd-config-erlang-cookie
      - file: ejabberd-config-distribution-tls-options
      - file: ejabberd-config-file-managed
      - file: ejabberd-config-systemd-dropin-plain-service
      - cmd: ejabberd-config-module-mod_durable_ack-compiled
      - cmd: ejabberd-config-module-mod_quorum-compiled
{%- if ejabberd.key_group %}
      - group: ejabberd-config-user-may-read-tls-key
{%- endif %}
{%- for sls in ejabberd.certificate_sls %}
      - sls: {{ sls }}
{%- endfor %}

{#- Poll the local API (answers once the listeners are up); `ejabberdctl started`
    boots an Erlang node per try and was seen taking 90 s after a restart. #}
ejabberd-service-node-started:
  cmd.run:
    - name: >-
        {{ wait_until(api_up, ejabberd.start_timeout, ejabberd.node ~ "'s API did not answer") }}
    - unless: {{ api_up | json }}
    - require:
      - service: ejabberd-service-running
      - file: ejabberd-config-local-api-client-installed

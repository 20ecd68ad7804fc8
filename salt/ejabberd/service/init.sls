{%- from 'ejabberd/map.jinja' import ejabberd with context %}
{%- set api_up = ejabberd.api_client ~ ' status </dev/null >/dev/null' %}
include:
  - ejabberd.config
  - labtls.certificates

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
      - file: ejabberd-config-file-managed
      - file: ejabberd-config-systemd-dropin-plain-service
      - group: ejabberd-config-user-may-read-tls-key
      - x509: labtls-{{ ejabberd.domain }}-private-key-generated
      - x509: labtls-{{ ejabberd.domain }}-certificate-signed-by-lab-ca

{#- Poll the local API (answers once the listeners are up); `ejabberdctl started`
    boots an Erlang node per try and was seen taking 90 s after a restart. #}
ejabberd-service-node-started:
  cmd.run:
    - name: >-
        for i in $(seq {{ ejabberd.start_timeout }}); do
        if {{ api_up }}; then exit 0; fi; sleep 1; done; exit 1
    - unless: {{ api_up | json }}
    - require:
      - service: ejabberd-service-running
      - file: ejabberd-config-local-api-client-installed

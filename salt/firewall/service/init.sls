{#- Debian's nftables.service loads the file at boot (a oneshot that stays active);
    its reload loads it again. Loading replaces only the formula's table, in one
    transaction, so the established SSH session and this Salt run carry on. #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ '/map.jinja' import firewall with context %}
include:
  - {{ tplroot }}.config

firewall-service-ruleset-loaded:
  service.running:
    - name: {{ firewall.service }}
    - enable: True
    - reload: True
    - watch:
      - file: firewall-config-ruleset-inbound-default-drop

{#- The ruleset file, checked by nft before it replaces the old one. A service
    without ports or with an unknown protocol fails the render, not the machine. #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ '/map.jinja' import firewall with context %}
{%- for name, service in firewall.services | dictsort %}
{%-   if not service.get('ports') %}
{{ raise('firewall:services:' ~ name ~ ': no ports') }}
{%-   endif %}
{%-   if service.get('protocol', 'tcp') not in ['tcp', 'udp'] %}
{{ raise('firewall:services:' ~ name ~ ': protocol must be tcp or udp') }}
{%-   endif %}
{%- endfor %}
include:
  - {{ tplroot }}.package

firewall-config-ruleset-inbound-default-drop:
  file.managed:
    - name: {{ firewall.config_file }}
    - source: salt://{{ tplroot }}/files/nftables.conf.jinja
    - template: jinja
    - context:
        firewall: {{ firewall | json }}
    - user: root
    - group: root
    - mode: '0644'
    - check_cmd: nft -c -f
    - require:
      - pkg: firewall-package-installed

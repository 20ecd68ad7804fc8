{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ '/map.jinja' import firewall with context %}

firewall-package-installed:
  pkg.installed:
    - pkgs: {{ firewall.pkgs | json }}
    - refresh: False
    - install_recommends: False

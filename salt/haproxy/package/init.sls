{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ '/map.jinja' import haproxy with context %}

haproxy-package-installed:
  pkg.installed:
    - pkgs: {{ haproxy.pkgs | json }}
    - refresh: False
    - install_recommends: False

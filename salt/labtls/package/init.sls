{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ '/map.jinja' import labtls with context %}

labtls-package-tools-installed:
  pkg.installed:
    - pkgs: {{ labtls.pkgs | json }}
    - refresh: False
    - install_recommends: False

{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ '/map.jinja' import prosody with context %}

prosody-package-server-and-sql-driver-installed:
  pkg.installed:
    - pkgs: {{ prosody.pkgs | json }}
    - refresh: False
    - install_recommends: False

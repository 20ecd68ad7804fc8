{#- The lab CA certificate is trusted system-wide (its key is never written to disk). #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ '/map.jinja' import labtls with context %}
include:
  - labtls.package

labtls-ca-certificate-trusted:
  file.managed:
    - name: {{ labtls.ca_trust_file }}
    - contents_pillar: labtls:ca:cert
    - user: root
    - group: root
    - mode: '0644'
    - makedirs: True
    - require:
      - pkg: labtls-package-tools-installed

labtls-ca-certificate-store-updated:
  cmd.run:
    - name: update-ca-certificates
    - onchanges:
      - file: labtls-ca-certificate-trusted

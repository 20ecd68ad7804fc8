{%- from 'prosody/map.jinja' import prosody with context %}
include:
  - prosody.config
  - labtls.certificates

prosody-service-running:
  service.running:
    - name: {{ prosody.service }}
    - enable: True
    - watch:
      - file: prosody-config-file-managed
      - group: prosody-config-user-may-read-tls-key
      - x509: labtls-{{ prosody.domain }}-private-key-generated
      - x509: labtls-{{ prosody.domain }}-certificate-signed-by-lab-ca

{#- Per domain: a private key generated on this machine (group ssl-cert) and a
    certificate with SANs signed by the lab CA from pillar (x509_v2). #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ '/map.jinja' import labtls with context %}
include:
  - labtls.package
  - labtls.ca

labtls-certificates-directory-present:
  file.directory:
    - name: {{ labtls.cert_dir }}
    - user: root
    - group: root
    - mode: '0755'
{%- for domain, cert in labtls.certificates | dictsort %}
{%-   set key_path = labtls.key_dir ~ '/' ~ domain ~ '.key' %}
{%-   set crt_path = labtls.cert_dir ~ '/' ~ domain ~ '.crt' %}

labtls-{{ domain }}-private-key-generated:
  x509.private_key_managed:
    - name: {{ key_path }}
    - algo: {{ labtls.key.algo }}
    - keysize: {{ labtls.key.keysize }}
    - new: False
    - user: root
    - group: {{ labtls.key_group }}
    - mode: '0640'
    - require:
      - pkg: labtls-package-tools-installed

labtls-{{ domain }}-certificate-signed-by-lab-ca:
  x509.certificate_managed:
    - name: {{ crt_path }}
    - private_key: {{ key_path }}
    - signing_private_key: {{ labtls.ca.key | json }}
    - signing_cert: {{ labtls.ca.cert | json }}
    - CN: {{ domain }}
    - subjectAltName: {{ ((cert.get('names', [domain]) | unique | map('regex_replace', '^', 'DNS:') | list)
                          + (cert.get('ips', []) | unique | map('regex_replace', '^', 'IP:') | list)) | join(', ') | json }}
    - basicConstraints: 'critical, CA:false'
    - keyUsage: 'critical, digitalSignature, keyEncipherment'
    - extendedKeyUsage: 'serverAuth, clientAuth'
    # Python 3.13 verifies strictly (VERIFY_X509_STRICT): a leaf without an Authority
    # Key Identifier is rejected ("Missing Authority Key Identifier").
    - subjectKeyIdentifier: hash
    - authorityKeyIdentifier: keyid:always
    - days_valid: {{ labtls.days_valid }}
    - days_remaining: {{ labtls.days_remaining }}
    - user: root
    - group: root
    - mode: '0644'
    - require:
      - x509: labtls-{{ domain }}-private-key-generated
      - file: labtls-certificates-directory-present
{%- endfor %}

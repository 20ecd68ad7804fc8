{#- Role: prosody on a local MariaDB (loopback only). Secrets (passwords) come from
    secrets.sls; the domain from the lab manifest, the certificate from labtls. #}
{%- from 'lab/map.jinja' import lab, me, tls with context %}
{%- set domain = lab.domains.prosody %}
roles:
  - prosody
labtls:
  cert_dir: {{ tls.cert_dir }}
  key_dir: {{ tls.key_dir }}
  key_group: {{ tls.key_group }}
  certificates:
    {{ domain }}:
      # The MUC and upload components' names, and this machine's address: the upload
      # URLs name it (clients on the host have no DNS for the lab's names).
      names: [{{ domain }}, conference.{{ domain }}, upload.{{ domain }}, {{ grains['id'] }}]
      ips: [{{ me.get('address', '127.0.0.1') }}]
mariadb:
  databases:
    prosody:
      character_set: utf8mb4
      collate: utf8mb4_unicode_ci
  users:
    prosody:
      host: localhost
      grants:
        prosody: all privileges
prosody:
  domain: {{ domain }}
  certificate: {{ tls.cert_dir }}/{{ domain }}.crt
  key: {{ tls.key_dir }}/{{ domain }}.key
  key_group: {{ tls.key_group }}
  certificate_sls:
    - labtls.certificates
  # The SQL database and user come from the mariadb formula on this machine.
  database_sls:
    - mariadb.database
  archive_expires_after: never
  # The lab's rooms (the manifest's rooms): persistent, members-only, archived; each
  # member has a bookmark of each of its rooms.
  muc:
    rooms: {{ lab.get('rooms', {}) | json }}
  # Group chats at conference.<domain>, uploads at upload.<domain> (formula defaults);
  # the upload URLs on this machine's address (in its certificate), HTTPS port 5281.
  upload:
    external_url: https://{{ me.get('address', '127.0.0.1') }}:5281/
# What this machine answers, and to whom (salt/firewall; SSH from anywhere is its
# default). One service per line: name: {ports: [...], sources: [...]}, [] = anywhere.
firewall:
  services:
    xmpp-client: {ports: [5222, 5223], sources: [{{ lab.network.cidr }}]}
    http-upload: {ports: [5281], sources: [{{ lab.network.cidr }}]}

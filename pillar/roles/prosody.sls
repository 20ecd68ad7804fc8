# Role: prosody on a local MariaDB (loopback only). Secrets (passwords) come from
# secrets.sls; addresses and the domain from lab/network.json (+ overrides).
roles:
  - prosody
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
  archive_expires_after: never

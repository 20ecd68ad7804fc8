# prosody: XMPP server on local MariaDB (SQL storage), lab TLS, users from pillar.
include:
  - prosody.package
  - prosody.config
  - prosody.service
  - prosody.users

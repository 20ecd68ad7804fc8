# mariadb: server on loopback only; databases, users and grants from pillar.
include:
  - mariadb.package
  - mariadb.config
  - mariadb.service
  - mariadb.database

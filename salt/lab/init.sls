# Lab base for every machine: secrets present, /etc/hosts from pillar, fresh apt lists.
include:
  - lab.check
  - lab.hosts
  - lab.apt

# firewall: nftables, inbound default drop except SSH and the services in pillar.
include:
  - firewall.package
  - firewall.config
  - firewall.service

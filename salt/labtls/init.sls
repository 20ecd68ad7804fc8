# labtls: trust the lab CA; per XMPP domain a key made here and a cert signed by the CA.
include:
  - labtls.package
  - labtls.ca
  - labtls.certificates

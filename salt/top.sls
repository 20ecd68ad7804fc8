# State top: roles come ONLY from pillar (`roles`, set by pillar/roles/*.sls).
base:
  '*':
    - lab
    - firewall
  'I@roles:prosody':
    - match: compound
    - labtls
    - mariadb
    - prosody
  'I@roles:ejabberd':
    - match: compound
    - labtls
    - ejabberd
  'I@roles:haproxy':
    - match: compound
    - labtls
    - haproxy

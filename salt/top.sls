# State top: roles come ONLY from pillar (`roles`, set by pillar/roles/*.sls).
base:
  '*':
    - lab
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
    - haproxy

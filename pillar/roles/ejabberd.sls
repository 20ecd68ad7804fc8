{#- Role: ejabberd cluster node (Mnesia) behind haproxy. Everything lab-specific the
    ejabberd formula needs is handed to it here, under its own key: node name and
    distribution address from the manifest, the cluster (machines of the same
    `cluster`, first = seed), the lab certificate made by labtls (also the node's
    certificate for the Erlang distribution over TLS, verified with the lab CA).
    Cookie and users come from secrets.sls. #}
{%- from 'lab/map.jinja' import lab, me, tls with context %}
{%- set domain = lab.domains.ejabberd %}
{%- set members = lab.cluster.get(me.get('cluster'), []) %}
{%- set peers = [] %}
{%- for name in members if name != grains['id'] %}
{%-   do peers.append(lab.hosts[name]) %}
{%- endfor %}
{%- set balancers = lab.machines.values() | selectattr('role', 'equalto', 'haproxy')
                    | map(attribute='address') | list %}
{#- Where clients reach this node's upload listener: the service's entry (lb) on this
    node's own port there, or this node itself when it is the entry. #}
{%- set entry = lab.entries.ejabberd %}
{%- set upload_address = lab.hosts.get(entry, me.get('address', '127.0.0.1')) %}
{%- set upload_port = lab.upload.node_port if entry == grains['id']
                      else lab.upload.lb_ports.get(grains['id'], lab.upload.node_port) %}
roles:
  - ejabberd
labtls:
  cert_dir: {{ tls.cert_dir }}
  key_dir: {{ tls.key_dir }}
  key_group: {{ tls.key_group }}
  ca_trust_file: {{ tls.ca_file }}
  certificates:
    {{ domain }}:
      # The nodes share the domain; each also answers to its machine name (the host
      # part of its Erlang node name, which the distribution's TLS client checks);
      # MUC and upload services; the address upload URLs name (clients on the host
      # have no DNS for the lab's names).
      names: [{{ domain }}, conference.{{ domain }}, upload.{{ domain }}, {{ grains['id'] }}]
      ips: [{{ upload_address }}]
ejabberd:
  domain: {{ domain }}
  node: ejabberd@{{ grains['id'] }}
  dist_interface: {{ me.get('address', '') }}
  cluster:
    nodes: {{ members | map('regex_replace', '^', 'ejabberd@') | list | json }}
  certificate: {{ tls.cert_dir }}/{{ domain }}.crt
  key: {{ tls.key_dir }}/{{ domain }}.key
  key_group: {{ tls.key_group }}
  certificate_sls:
    - labtls.certificates
  dist_tls:
    enabled: true
    cacertfile: {{ tls.ca_file }}
  # haproxy (send-proxy) is in front.
  proxy_protocol: true
  # The lab's rooms (the manifest's rooms): persistent, members-only, archived; each
  # member has a bookmark of each of its rooms.
  muc:
    rooms: {{ lab.get('rooms', {}) | json }}
  # Group chats at conference.<domain> (formula defaults). Uploads: files stay on the
  # node that issued the slot, so its URLs name its own port on lb, which forwards
  # only to this node.
  upload:
    port: {{ lab.upload.node_port }}
    put_url: https://{{ upload_address }}:{{ upload_port }}/upload
# What this machine answers, and to whom (salt/firewall; SSH from anywhere is its
# default). One service per line: name: {ports: [...], sources: [...]}, [] = anywhere.
# Clients (XMPP and uploads) only through the balancer (it sends the PROXY header);
# without one, from the lab network. The Erlang distribution (one port, no epmd) only from the other
# cluster members.
firewall:
  services:
    xmpp-client: {ports: [5222, 5223], sources: {{ (balancers or [lab.network.cidr]) | json }}}
    http-upload: {ports: [{{ lab.upload.node_port }}], sources: {{ (balancers or [lab.network.cidr]) | json }}}
{%- if peers %}
    erlang-distribution: {ports: [4370], sources: {{ peers | json }}}
{%- endif %}

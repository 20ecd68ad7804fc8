{#- Every lab machine and XMPP domain resolvable on every machine: short Erlang node
    names (ejabberd@ejabberd1) need it. A domain resolves to its entry machine
    (lab:entries, e.g. ejabberd.test -> lb). `clean` drops the name from other lines
    (Debian maps the own hostname to 127.0.1.1, which would put the Erlang
    distribution on loopback). #}
{%- set lab = salt['pillar.get']('lab', {}) %}
{%- set hosts = lab.get('hosts', {}) %}
{%- set entries = lab.get('entries', {}) %}
{%- set me = grains['id'] %}

{#- The machine is named after its minion id (ejabberd's node name is
    ejabberd@<machine>; Vagrant does not set it, see the Vagrantfile). #}
lab-hostname-file-says-{{ me }}:
  file.managed:
    - name: /etc/hostname
    - contents: {{ me }}

lab-hostname-is-{{ me }}:
  cmd.run:
    - name: hostname {{ me }}
    - unless: test "$(hostname)" = {{ me }}
    - require:
      - file: lab-hostname-file-says-{{ me }}
{%- for name, address in hosts | dictsort %}

lab-hosts-{{ name }}-resolves-to-{{ address }}:
  host.present:
    - name: {{ name }}
    - ip: {{ address }}
    - clean: True
{%- endfor %}
{%- for service, domain in lab.get('domains', {}) | dictsort %}
{%-   set address = hosts.get(entries.get(service)) %}
{%-   if address %}

lab-hosts-domain-{{ domain }}-resolves-to-{{ address }}:
  host.present:
    - name: {{ domain }}
    - ip: {{ address }}
    - clean: True
{%-   endif %}
{%- endfor %}

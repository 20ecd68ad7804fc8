{#- Every lab machine and XMPP domain resolvable on every machine: short Erlang node
    names (ejabberd@ejabberd1) need it. `clean` drops the name from other lines
    (Debian maps the own hostname to 127.0.1.1, which would put the Erlang
    distribution on loopback). #}
{%- set lab = salt['pillar.get']('lab', {}) %}
{%- set hosts = lab.get('hosts', {}) %}
{%- set domains = lab.get('domains', {}) %}
{%- for name, address in hosts | dictsort %}

lab-hosts-{{ name }}-resolves-to-{{ address }}:
  host.present:
    - name: {{ name }}
    - ip: {{ address }}
    - clean: True
{%- endfor %}
{%- for service, domain in domains | dictsort %}
{%-   set address = hosts.get('lb') if service == 'ejabberd' and hosts.get('lb')
                   else hosts.get(service) or hosts.get(service ~ '1') %}
{%-   if address %}

lab-hosts-domain-{{ domain }}-resolves-to-{{ address }}:
  host.present:
    - name: {{ domain }}
    - ip: {{ address }}
    - clean: True
{%-   endif %}
{%- endfor %}

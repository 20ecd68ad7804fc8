{#- Role: ejabberd cluster node (Mnesia) behind haproxy. Everything lab-specific the
    ejabberd formula needs is handed to it here, under its own key: node name and
    distribution address from the manifest, the cluster (machines of the same
    `cluster`, first = seed), the lab certificate made by labtls. Cookie and users
    come from secrets.sls. #}
{%- from 'lab/map.jinja' import lab, me, tls with context %}
{%- set domain = lab.domains.ejabberd %}
{%- set members = lab.cluster.get(me.get('cluster'), []) %}
roles:
  - ejabberd
labtls:
  cert_dir: {{ tls.cert_dir }}
  key_dir: {{ tls.key_dir }}
  key_group: {{ tls.key_group }}
  certificates:
    {{ domain }}:
      # The nodes share the domain; each also answers to its machine name.
      names: [{{ domain }}, {{ grains['id'] }}]
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
  # haproxy (send-proxy) is in front.
  proxy_protocol: true

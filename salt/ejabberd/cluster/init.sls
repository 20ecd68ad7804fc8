{#- Join the seed node when list_cluster lacks it; then poll (ejabberd >= 24.06
    returns from join_cluster at once). A node that lost its data comes back as a
    one-node cluster and joins again the same way. #}
{%- from 'ejabberd/map.jinja' import ejabberd with context %}
include:
  - ejabberd.service
{%- if ejabberd.cluster.nodes and not ejabberd.is_seed %}
{%-   set listed = ejabberd.api_client ~ " list_cluster </dev/null | grep -q '\"" ~ ejabberd.seed ~ "\"'" %}

ejabberd-cluster-joined-{{ ejabberd.seed }}:
  cmd.run:
    - name: >-
        ejabberdctl join_cluster {{ ejabberd.seed }} &&
        for i in $(seq {{ ejabberd.cluster.join_timeout }}); do
        if {{ listed }}; then exit 0; fi; sleep 1; done; exit 1
    - unless: {{ listed | json }}
    - require:
      - cmd: ejabberd-service-node-started
{%- else %}

ejabberd-cluster-seed-or-single-node:
  test.nop:
    - name: {{ ejabberd.node }} is the seed ({{ ejabberd.cluster.nodes | join(', ') or 'no cluster' }})
{%- endif %}

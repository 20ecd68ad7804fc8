{#- Join the seed node when list_cluster lacks it; then poll (ejabberd >= 24.06
    returns from join_cluster at once). A node that lost its data comes back as a
    one-node cluster and joins again the same way. #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ '/map.jinja' import ejabberd with context %}
{%- from tplroot ~ '/libwait.jinja' import wait_until %}
include:
  - {{ tplroot }}.service
{%- if ejabberd.cluster.nodes and not ejabberd.is_seed %}
{%-   set listed = ejabberd.api_client ~ " list_cluster </dev/null | grep -q '\"" ~ ejabberd.seed ~ "\"'" %}

{#- A joining node may be provisioned alongside the seed (parallel providers): wait
    until the seed says it is started (over the Erlang distribution, the only port of
    the seed a member may reach), so the join never meets a half-started seed. #}
ejabberd-cluster-seed-{{ ejabberd.seed }}-answering:
  cmd.run:
    - name: >-
        {{ wait_until('ejabberdctl --node ' ~ ejabberd.seed ~ ' status >/dev/null 2>&1',
                      ejabberd.cluster.seed_wait, ejabberd.seed ~ ' did not answer', 3) }}
    - unless: {{ listed | json }}
    - require:
      - cmd: ejabberd-service-node-started

{#- join_cluster is itself an Erlang node that must reach this node over the (TLS)
    distribution: on a slow VM one attempt can fail with the node up, so it is tried
    again until join_timeout; then the join is awaited in list_cluster. #}
ejabberd-cluster-joined-{{ ejabberd.seed }}:
  cmd.run:
    - name: >-
        {{ wait_until('ejabberdctl join_cluster ' ~ ejabberd.seed,
                      ejabberd.cluster.join_timeout, 'join_cluster ' ~ ejabberd.seed ~ ' did not succeed', 5) }} &&
        {{ wait_until(listed, ejabberd.cluster.join_timeout, ejabberd.seed ~ ' not in list_cluster after the join') }}
    - unless: {{ listed | json }}
    - require:
      - cmd: ejabberd-cluster-seed-{{ ejabberd.seed }}-answering
{%- else %}

ejabberd-cluster-seed-or-single-node:
  test.nop:
    - name: {{ ejabberd.node }} is the seed ({{ ejabberd.cluster.nodes | join(', ') or 'no cluster' }})
{%- endif %}

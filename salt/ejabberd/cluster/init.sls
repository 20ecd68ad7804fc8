{#- Join the seed node when list_cluster lacks it; then poll (ejabberd >= 24.06
    returns from join_cluster at once). A node that lost its data comes back as a
    one-node cluster and joins again the same way. #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ '/map.jinja' import ejabberd with context %}
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
        for i in $(seq {{ (ejabberd.cluster.seed_wait / 3) | round(0, 'ceil') | int }}); do
        if ejabberdctl --node {{ ejabberd.seed }} status >/dev/null 2>&1; then exit 0; fi; sleep 3; done;
        echo "{{ ejabberd.seed }} did not answer within {{ ejabberd.cluster.seed_wait }} s" >&2; exit 1
    - unless: {{ listed | json }}
    - require:
      - cmd: ejabberd-service-node-started

ejabberd-cluster-joined-{{ ejabberd.seed }}:
  cmd.run:
    - name: >-
        ejabberdctl join_cluster {{ ejabberd.seed }} &&
        for i in $(seq {{ ejabberd.cluster.join_timeout }}); do
        if {{ listed }}; then exit 0; fi; sleep 1; done; exit 1
    - unless: {{ listed | json }}
    - require:
      - cmd: ejabberd-cluster-seed-{{ ejabberd.seed }}-answering
{%- else %}

ejabberd-cluster-seed-or-single-node:
  test.nop:
    - name: {{ ejabberd.node }} is the seed ({{ ejabberd.cluster.nodes | join(', ') or 'no cluster' }})
{%- endif %}

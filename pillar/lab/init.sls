{#- Lab-wide pillar. Addresses and domains come from ONE file, lab/network.json
    (also read by the Vagrantfile and lab/secrets.py); override them with
    <state dir>/overrides.sls. #}
{%- import_json 'lab/network.json' as network %}
{%- do network.lab.update({
      'pkg_refresh': True,
      'cluster': {'ejabberd': ['ejabberd1', 'ejabberd2']},
    }) %}
{{ network | yaml(False) }}

{#- Lab-wide pillar: the lab manifest (pillar/lab/manifest.json, + overrides.sls) with
    its derived keys (lab:hosts, lab:cluster), for salt/lab and the tests. The
    formulas never read it: pillar/roles/<role>.sls gives each its own keys. #}
{%- from 'lab/map.jinja' import lab with context %}
{%- do lab.setdefault('pkg_refresh', True) %}
{{ {'lab': lab} | yaml(False) }}

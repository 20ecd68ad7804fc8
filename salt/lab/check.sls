{#- Fail early and clearly when the generated secrets pillar is missing. #}
{%- if not salt['pillar.get']('labtls:ca:cert') or not salt['pillar.get']('roles') %}
lab-check-secrets-and-role-pillar-present:
  test.fail_without_changes:
    - name: >-
        No secrets or no role in pillar for minion {{ grains['id'] }}: run
        `python3 lab/secrets.py` (state dir = second pillar root) and use a minion id
        of the lab manifest (pillar/lab/manifest.json).
    - failhard: True
{%- else %}
lab-check-secrets-and-role-pillar-present:
  test.nop:
    - name: roles {{ salt['pillar.get']('roles') | join(', ') }}
{%- endif %}

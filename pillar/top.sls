# Pillar top: pillar alone decides what a machine is. Each machine of the lab manifest
# (pillar/lab/manifest.json; minion id = machine name) gets the lab-wide pillar, the
# generated secrets, the file of its role (which sets `roles`; salt/top.sls maps roles
# to formulas) and, last so that its values win, the optional overrides.
#
# `secrets` and `overrides` live in the state dir (lab/state, second pillar root in
# lab/minion; the nspawn harness binds its own state dir there):
#   secrets.sls    written by `python3 lab/secrets.py` (required: states fail without it)
#   overrides.sls  optional, JSON/YAML, deep-merged over everything (see pillar/README.md)
{%- import_json 'lab/manifest.json' as manifest %}
base:
  '*':
    - lab
    - secrets
{%- for name, machine in manifest.lab.machines.items() %}
  '{{ name }}':
    - roles.{{ machine.role }}
{%- endfor %}
  # A second catch-all target (pcre `.*`) so the optional file comes after the
  # role files; ignore_missing makes a missing overrides.sls not an error.
  'E@.*':
    - ignore_missing: True
    - overrides

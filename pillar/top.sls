# Pillar top: pillar alone decides what a machine is. Each machine (minion id =
# machine name) gets the lab-wide pillar, its role file (which sets `roles`;
# salt/top.sls maps roles to formulas), the generated secrets and, last so that its
# values win, the optional overrides.
#
# `secrets` and `overrides` live in the state dir (lab/state, second pillar root in
# lab/minion; the nspawn harness binds its own state dir there):
#   secrets.sls    written by `python3 lab/secrets.py` (required: states fail without it)
#   overrides.sls  optional, JSON/YAML, deep-merged over everything (see pillar/README.md)
base:
  '*':
    - lab
    - secrets
  'prosody':
    - roles.prosody
  'ejabberd1':
    - roles.ejabberd
    - roles.ejabberd1
  'ejabberd2':
    - roles.ejabberd
    - roles.ejabberd2
  'lb':
    - roles.lb
  # A second catch-all target (pcre `.*`) so the optional file comes after the
  # role files; ignore_missing makes a missing overrides.sls not an error.
  'E@.*':
    - ignore_missing: True
    - overrides

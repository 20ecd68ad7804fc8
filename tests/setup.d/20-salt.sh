#!/usr/bin/env bash
# Host venv with the project's pinned Salt for the cheap gates (tests/test_salt_gates.py):
# the lab's Salt (version and extensions pinned in pillar/lab/manifest.json, lab:salt)
# + salt-lint, in .cache/salt-venv.
# Needs gcc, libc6-dev, python3-dev (timelib has no wheel): see tests/apt/salt.txt.
# Idempotent: does nothing when the venv already has exactly these pins.
set -euo pipefail
cd "$(dirname "$0")/../.."

venv=.cache/salt-venv
mapfile -t pins < <(/usr/bin/python3 lab/manifest.py salt-pins)
pins+=(salt-lint==0.9.2)
stamp="$venv/.pins"
want="$(printf '%s\n' "${pins[@]}")"

if [ -x "$venv/bin/salt-call" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
mkdir -p .cache
[ -x "$venv/bin/python" ] || /usr/bin/python3 -m venv "$venv"
# timelib's generated parser compiles in minutes at -O2; its speed does not matter here.
CFLAGS="-O0 -g0" "$venv/bin/python" -m pip install -q --disable-pip-version-check "${pins[@]}"
"$venv/bin/salt-call" --version >/dev/null
printf '%s\n' "$want" >"$stamp"

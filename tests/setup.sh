#!/usr/bin/env bash
# Set up this host for the test suite: Debian packages (tests/apt/*.txt), then
# the project's virtualenv (.venv) and whatever tests/setup.d/*.sh prepare.
# Idempotent; run as root on Debian 12 or 13.
set -euo pipefail
cd "$(dirname "$0")/.."

export DEBIAN_FRONTEND=noninteractive
# Packages must not start their daemons on the host (no systemd here, and the
# tests start their own instances with throwaway configs).
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod 755 "$policy"
  trap 'rm -f "$policy"' EXIT
fi
mapfile -t pkgs < <(cat tests/apt/*.txt | sed 's/#.*//' | tr -s ' \t' '\n' | sed '/^$/d' | sort -u)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Debian's python3 (not whatever python3 comes first on PATH) so that this
# works the same on a plain Debian machine.
py=/usr/bin/python3
[ -x .venv/bin/python ] || "$py" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'

for step in tests/setup.d/*.sh; do
  [ -e "$step" ] || continue
  echo "setup: $step"
  bash "$step"
done

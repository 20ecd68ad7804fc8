#!/usr/bin/env bash
# Build a wheelhouse of the lab's pinned Salt (lab:salt of the lab manifest,
# pillar/lab/manifest.json, as lab/bootstrap-salt.sh installs it) for a Debian release's own Python, in a throwaway
# mmdebstrap chroot of that release, so that lab/bootstrap-salt.sh installs
# Salt in a VM offline in seconds instead of compiling it under emulation.
#
#   lab/box/wheelhouse.sh [SUITE] [STATE_DIR]   # trixie (default) | bookworm; lab/state
#
# Result: STATE_DIR/wheelhouse/pyX.Y/*.whl, plus a wheel of pip itself (the
# bootstrap runs pip from it, so the VM needs neither ensurepip nor apt).
# (the synced folder carries it to
# /srv/xmpp-tool/lab/state/wheelhouse in every VM). Cached under
# .cache/wheelhouse/ by a hash of its inputs; prints the pyX.Y directory.
# Needs root, mmdebstrap, and network access to Debian's archive and PyPI.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
suite=${1:-trixie}
state_dir=${2:-$repo/lab/state}
mirror=${XMPP_LAB_BOX_MIRROR:-http://deb.debian.org/debian}
cache=$repo/.cache/wheelhouse

log() { printf 'wheelhouse: %s\n' "$*" >&2; }
pins=$(python3 "$repo/lab/manifest.py" salt-pins | paste -sd ' ')
[ -n "$pins" ] || { log "no lab:salt pins in pillar/lab/manifest.json"; exit 1; }
case "$suite" in trixie) py=3.13 ;; bookworm) py=3.11 ;; *) log "unsupported suite $suite"; exit 64 ;; esac

mapfile -t host_cas < <(find /usr/local/share/ca-certificates -type f -name '*.crt' 2>/dev/null | sort)
hash=$( { cat "$0" "$here/wheelhouse-inner.sh"; echo "$suite $mirror $pins"; } | sha256sum | cut -c1-16)
built=$cache/$suite-$hash/py$py
if ! ls "$built"/salt-*.whl >/dev/null 2>&1; then
  start=$SECONDS
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/wheelhouse.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  ca_hook=true
  if [ "${#host_cas[@]}" -gt 0 ]; then
    ca_hook="cp ${host_cas[*]} \"\$1/usr/local/share/ca-certificates/\" && chroot \"\$1\" update-ca-certificates >/dev/null 2>&1"
  fi
  log "building wheels for $pins with Debian $suite's Python $py"
  mmdebstrap --mode=root --variant=minbase --quiet \
    --include=python3-venv,python3-dev,gcc,libc6-dev,ca-certificates \
    --customize-hook="$ca_hook" \
    --customize-hook="copy-in $here/wheelhouse-inner.sh /tmp" \
    --customize-hook="chroot \"\$1\" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root sh /tmp/wheelhouse-inner.sh $pins" \
    --customize-hook="copy-out /tmp/wheels $tmp" \
    "$suite" /dev/null "deb $mirror $suite main"
  mkdir -p "$built"
  cp "$tmp"/wheels/*.whl "$built/"
  log "built $(ls "$built" | wc -l) wheels in $((SECONDS - start)) s"
fi
mkdir -p "$state_dir/wheelhouse/py$py"
cp -u "$built"/*.whl "$state_dir/wheelhouse/py$py/"
echo "$state_dir/wheelhouse/py$py"

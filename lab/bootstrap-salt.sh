#!/bin/sh
# The lab's own Salt bootstrap: Vagrant's salt provisioner runs it as
# `bootstrap_script` (and kitchen.yml as `salt_bootstrap_url`) instead of the
# upstream bootstrap-salt.sh, whose download URL (bootstrap.saltproject.io) was
# shut down in Nov 2024 and which Vagrant < 2.4.3 still fetches.
#
# Deterministic and pinned: installs the Salt version and extensions pinned in the lab
# manifest (/srv/xmpp-tool/pillar/lab/manifest.json, lab:salt; the versions the project
# tests with) into the venv /opt/salt and links
# salt-call/salt-minion into /usr/local/bin, where the provisioner looks for them.
#   * offline from a wheelhouse when the checkout carries one for this guest's
#     Python: /srv/xmpp-tool/lab/state/wheelhouse/py3.13/ (built on a host with
#     the same Debian Python, see lab/box/wheelhouse.sh);
#   * otherwise from PyPI, with gcc/python3-dev from Debian (timelib has no wheel).
# Extra CA certificates in /srv/xmpp-tool/lab/state/host-ca/*.crt are trusted
# first (for networks that re-sign HTTPS, so pip can reach PyPI).
#
# Accepts and ignores the upstream script's options, except the two Vagrant
# relies on: `-c DIR` (where Vagrant uploaded the minion config; copied to
# /etc/salt/minion) and `-C` (configure only, Salt already installed).
# Idempotent: re-running with the same pins only refreshes the minion config.
set -eu

SRC=${XMPP_LAB_SRC:-/srv/xmpp-tool}
VENV=/opt/salt

config_dir=
configure_only=0
while [ $# -gt 0 ]; do
  case "$1" in
    -c) config_dir=${2:-}; shift; [ $# -gt 0 ] && shift ;;
    -C) configure_only=1; shift ;;
    -k|-x|-j|-J|-p|-r|-R|-g|-G|-b|-H|-U|-w|-y|-X) shift; [ $# -gt 0 ] && shift ;;
    *) shift ;;  # -F -P -M -S -N -D, install type (stable/git) and version
  esac
done

log() { echo "bootstrap-salt: $*"; }
fail() { echo "bootstrap-salt: error: $*" >&2; exit 1; }
# pip's own reason, one line: its last ERROR line (e.g. "No matching distribution
# found for salt==3008.9"), else its last line.
why() {
  printf '%s\n' "$1" | grep '^ERROR' | tail -n 1 | sed 's/^ERROR: //' | grep . ||
    printf '%s\n' "$1" | tail -n 1
}
export DEBIAN_FRONTEND=noninteractive

apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then apt-get update -qq; apt_updated=1; fi
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# 1. Extra CA certificates carried by the checkout (skipped when the same
#    certificate is already trusted: update-ca-certificates takes minutes under
#    emulation).
already_trusted() {
  for t in $(find /usr/local/share/ca-certificates -type f -name '*.crt' 2>/dev/null); do
    cmp -s "$1" "$t" && return 0
  done
  return 1
}
if ls "$SRC"/lab/state/host-ca/*.crt >/dev/null 2>&1; then
  changed=0
  for c in "$SRC"/lab/state/host-ca/*.crt; do
    already_trusted "$c" && continue
    mkdir -p /usr/local/share/ca-certificates/xmpp-lab-host
    cp "$c" /usr/local/share/ca-certificates/xmpp-lab-host/
    changed=1
  done
  if [ "$changed" = 1 ]; then
    command -v update-ca-certificates >/dev/null || apt_install ca-certificates
    update-ca-certificates >/dev/null 2>&1
    log "trusting extra CA certificates from $SRC/lab/state/host-ca"
  fi
fi

# 2. Salt, pinned, in /opt/salt.
pyver=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true)
if [ -z "$pyver" ]; then apt_install python3; pyver=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])'); fi
PINS=$(python3 "$SRC/lab/manifest.py" salt-pins) ||
  { echo "bootstrap-salt: cannot read the Salt pins from $SRC/pillar/lab/manifest.json" >&2; exit 1; }
PINS=$(echo $PINS)  # one line
stamp="$PINS python$pyver"
if [ -x "$VENV/bin/salt-call" ] && [ "$(cat "$VENV/.pins" 2>/dev/null)" = "$stamp" ]; then
  log "Salt already installed ($stamp)"
else
  if [ "$configure_only" = 1 ]; then log "salt-call found elsewhere; installing the pinned Salt anyway"; fi
  rm -rf "$VENV"
  # --no-compile: byte-compiling all of Salt at install time costs minutes under
  # emulation; Python compiles the modules salt-call actually imports on first use.
  export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_CERT=/etc/ssl/certs/ca-certificates.crt
  wheels=$SRC/lab/state/wheelhouse/py$pyver
  pip_wheel=$(ls "$wheels"/pip-*.whl 2>/dev/null | tail -n 1 || true)
  if ls "$wheels"/salt-*.whl >/dev/null 2>&1 && [ -n "$pip_wheel" ]; then
    # Offline: a venv without pip (no python3-venv/ensurepip needed, nothing from
    # apt) and pip run straight from its wheel in the wheelhouse.
    log "installing $PINS from the wheelhouse $wheels"
    python3 -m venv --without-pip "$VENV"
    # shellcheck disable=SC2086
    if ! out=$("$VENV/bin/python" "$pip_wheel/pip" install -q --no-compile --no-index \
               --find-links "$wheels" $PINS 2>&1); then
      rm -rf "$VENV"
      fail "the wheelhouse $wheels cannot satisfy $PINS ($(why "$out")); rebuild it for these pins: lab/box/wheelhouse.sh SUITE"
    fi
  else
    log "no wheelhouse for Python $pyver in $wheels: installing $PINS from PyPI (compiles timelib)"
    python3 -c 'import ensurepip, venv' 2>/dev/null || apt_install python3-venv
    apt_install gcc libc6-dev python3-dev
    python3 -m venv "$VENV"
    # shellcheck disable=SC2086
    if ! out=$("$VENV/bin/pip" install -q --no-compile $PINS 2>&1); then
      rm -rf "$VENV"
      fail "pip cannot install $PINS from PyPI ($(why "$out"))"
    fi
  fi
  echo "$stamp" >"$VENV/.pins"
fi
for b in salt-call salt-minion; do ln -sf "$VENV/bin/$b" "/usr/local/bin/$b"; done

# 3. The minion config the provisioner uploaded (its salt-call has no --config-dir).
if [ -n "$config_dir" ] && [ -f "$config_dir/minion" ]; then
  mkdir -p /etc/salt
  install -m 0644 "$config_dir/minion" /etc/salt/minion
  log "minion config installed at /etc/salt/minion"
elif [ -f "$SRC/lab/minion" ] && [ ! -f /etc/salt/minion ]; then
  mkdir -p /etc/salt
  install -m 0644 "$SRC/lab/minion" /etc/salt/minion
  log "minion config installed from $SRC/lab/minion"
fi
"$VENV/bin/salt-call" --version

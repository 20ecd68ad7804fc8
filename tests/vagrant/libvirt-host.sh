#!/usr/bin/env bash
# Prepare this host for `vagrant up --provider=libvirt` without systemd as PID 1:
# run libvirt's daemons by hand, define/start the `default` NAT network and a
# `dir` storage pool named `default`. Idempotent.
#
#   tests/vagrant/libvirt-host.sh start    # (default) make sure all of it runs
#   tests/vagrant/libvirt-host.sh stop     # stop the daemons this script started
#
# Daemons started here record their PIDs under /run/xmpp-lab-libvirt/ and
# `stop` ends only those (never by name).
set -euo pipefail
action=${1:-start}
piddir=/run/xmpp-lab-libvirt
mkdir -p "$piddir"

log() { printf 'libvirt-host: %s\n' "$*" >&2; }

qemu_conf=/etc/libvirt/qemu.conf
# Without these, libvirtd re-probes QEMU on every call and each domain define
# stalls for about a minute (see docs/FIELD-NOTES: three VMs took 605 s vs ~180 s).
ensure_qemu_conf() {
  grep -qE '^user *= *"root"' "$qemu_conf" || echo 'user = "root"' >>"$qemu_conf"
  grep -qE '^group *= *"root"' "$qemu_conf" || echo 'group = "root"' >>"$qemu_conf"
}

running() {  # pidfile
  [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

start_daemon() {  # name binary pidfile-of-daemon
  local name=$1 bin=$2 pidfile=$3
  if running "$pidfile"; then return 0; fi
  log "starting $name"
  "$bin" -d
  for _ in $(seq 50); do running "$pidfile" && break; sleep 0.2; done
  running "$pidfile" || { log "$name did not start"; exit 1; }
  cp "$pidfile" "$piddir/$name.pid"
}

start() {
  ensure_qemu_conf
  start_daemon virtlogd /usr/sbin/virtlogd /run/virtlogd.pid
  start_daemon libvirtd /usr/sbin/libvirtd /run/libvirtd.pid
  for _ in $(seq 50); do virsh -c qemu:///system version >/dev/null 2>&1 && break; sleep 0.2; done

  if ! virsh -q net-info default >/dev/null 2>&1; then
    local xml=/usr/share/libvirt/networks/default.xml
    virsh -q net-define "$xml" >/dev/null
  fi
  # (output captured first: `grep -q` closing the pipe early fails under pipefail)
  local info
  info=$(virsh net-info default)
  if ! grep -qE '^Active: +yes' <<<"$info"; then
    log "starting network default"
    virsh -q net-start default >/dev/null
    touch "$piddir/net-default"
  fi

  if ! virsh -q pool-info default >/dev/null 2>&1; then
    mkdir -p /var/lib/libvirt/images
    virsh -q pool-define-as default dir --target /var/lib/libvirt/images >/dev/null
    virsh -q pool-build default >/dev/null 2>&1 || true
  fi
  info=$(virsh pool-info default)
  if ! grep -qE '^State: +running' <<<"$info"; then
    virsh -q pool-start default >/dev/null
  fi
}

stop() {
  # The network's dnsmasq outlives libvirtd: stop the network first if we started it.
  if [ -e "$piddir/net-default" ] && running "$piddir/libvirtd.pid"; then
    log "stopping network default"
    virsh -q net-destroy default >/dev/null 2>&1 || true
  fi
  rm -f "$piddir/net-default"
  for name in libvirtd virtlogd; do
    local f=$piddir/$name.pid
    if running "$f"; then
      log "stopping $name ($(cat "$f"))"
      kill "$(cat "$f")"
      for _ in $(seq 50); do running "$f" || break; sleep 0.2; done
    fi
    rm -f "$f"
  done
}

case "$action" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 [start|stop]" >&2; exit 64 ;;
esac

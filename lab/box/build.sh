#!/usr/bin/env bash
# Build a Debian libvirt Vagrant box locally, for hosts that cannot reach Vagrant
# Cloud (CI) or want a box whose inputs they can read.
#
#   lab/box/build.sh [SUITE]                     # SUITE: trixie (default) or bookworm
#   lab/box/build.sh SUITE --preload WHEELHOUSE  # the CI box (see below)
#
# Prints the path of the .box file on stdout (everything else goes to stderr).
# The result is cached under .cache/vagrant-box/ by a hash of every input
# (this script, the suite, the mirror, Vagrant's insecure public key and the
# host's extra CA certificates), so a second run is instant.
#
# What is in the box: Debian SUITE (main, -updates, -security), the cloud
# kernel, systemd, openssh-server (host keys made at first boot, UseDNS no),
# sudo, ifupdown + DHCP on eth0 (net.ifnames=0, as Vagrant's Debian guest
# plugin expects), python3, rsync (for rsync synced folders), the `vagrant`
# user with Vagrant's insecure public key and NOPASSWD sudo, and the host's
# extra CA certificates (/usr/local/share/ca-certificates) trusted.
#
# --preload WHEELHOUSE (the pyX.Y directory lab/box/wheelhouse.sh prints) makes
# the CI box of the whole-lab vagrant test: lab/bootstrap-salt.sh has already
# installed the pinned Salt from that wheelhouse (so in the VM it finds it and
# only configures), and every formula's packages lie in apt's cache (Salt still
# installs them; nothing is downloaded). The user's box stays the plain one.
#
# Disk layout: one MBR partition at a fixed offset (1 MiB) booted by extlinux.
# The partition is formatted through `losetup -o/--sizelimit`, because the
# kernels of the machines this runs on lack partition-table support (no
# loopXp1 devices), and grub-install cannot work that way.
#
# Needs root and: mmdebstrap, extlinux, syslinux-common, e2fsprogs, fdisk
# (sfdisk), qemu-utils, and Debian's vagrant package (for the insecure key).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
suite=${1:-${XMPP_LAB_BOX_SUITE:-trixie}}
preload=
if [ "${2:-}" = --preload ]; then preload=${3:?--preload needs the wheelhouse directory}; fi
mirror=${XMPP_LAB_BOX_MIRROR:-http://deb.debian.org/debian}
security_mirror=${XMPP_LAB_BOX_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
cache=${XMPP_LAB_BOX_CACHE:-$repo/.cache/vagrant-box}
disk_gib=${XMPP_LAB_BOX_DISK_GIB:-20}

log() { printf 'box: %s\n' "$*" >&2; }
die() { printf 'box: error: %s\n' "$*" >&2; exit 1; }

case "$suite" in trixie|bookworm) ;; *) die "unsupported suite '$suite' (trixie or bookworm)";; esac
[ "$(id -u)" = 0 ] || die "must run as root (mmdebstrap, losetup, mount)"
for tool in mmdebstrap extlinux sfdisk mkfs.ext4 losetup qemu-img; do
  command -v "$tool" >/dev/null || die "missing tool: $tool"
done
mbr=/usr/lib/EXTLINUX/mbr.bin
[ -e "$mbr" ] || mbr=/usr/lib/syslinux/mbr/mbr.bin
[ -e "$mbr" ] || die "missing syslinux MBR (package syslinux-common/extlinux)"

# Vagrant's well-known insecure public key, from Debian's vagrant package
# (any installed Vagrant version's copy; they are identical).
insecure_key=${XMPP_LAB_VAGRANT_PUBKEY:-}
if [ -z "$insecure_key" ]; then
  for k in /usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant.pub \
           /opt/vagrant/embedded/gems/gems/vagrant-*/keys/vagrant.pub; do
    [ -e "$k" ] && insecure_key=$k
  done
fi
[ -n "$insecure_key" ] && [ -e "$insecure_key" ] || die "Vagrant's insecure public key not found (install vagrant)"

preload_hooks=()
preload_id=
if [ -n "$preload" ]; then
  ls "$preload"/salt-*.whl >/dev/null 2>&1 || die "no Salt wheel in $preload (lab/box/wheelhouse.sh)"
  role_packages=$(cd "$repo" && python3 -c 'from lab import harness; print(" ".join(harness.formula_packages()))')
  preload_id="preload $(cd "$preload" && ls | sort | tr '\n' ' ') $role_packages $(cat "$here/preload.sh" "$repo/lab/bootstrap-salt.sh" "$repo/lab/manifest.py" | sha256sum)"
  preload_hooks=(--skip=cleanup/apt/cache
    "--customize-hook=sh $here/preload.sh \"\$1\" $repo $preload $role_packages")
fi

mapfile -t host_cas < <(find /usr/local/share/ca-certificates -type f -name '*.crt' 2>/dev/null | sort)

packages=(
  linux-image-cloud-amd64 initramfs-tools systemd systemd-sysv dbus udev kmod
  openssh-server sudo ifupdown isc-dhcp-client iproute2 netbase
  ca-certificates python3 rsync procps e2fsprogs less
)

hash=$(
  {
    cat "$0" "$here/customize.sh"; echo "$suite $mirror $security_mirror $disk_gib ${packages[*]}"
    echo "$preload_id"
    cat "$insecure_key"
    for c in "${host_cas[@]}"; do cat "$c"; done
  } | sha256sum | cut -c1-16
)
dest=$cache/$suite${preload:+-ci}-$hash
box=$dest/debian-$suite-libvirt.box
if [ -s "$box" ]; then
  log "cached: $box"
  echo "$box"; exit 0
fi

mkdir -p "$cache"
work=$(mktemp -d "$cache/build.XXXXXX")
loopdev=
cleanup() {
  set +e
  mountpoint -q "$work/mnt" && umount -R "$work/mnt"
  [ -n "$loopdev" ] && losetup -d "$loopdev"
  rm -rf "$work"
}
trap cleanup EXIT

start=$SECONDS
img=$work/disk.raw
offset=$((1024 * 1024))
truncate -s "${disk_gib}G" "$img"
printf 'start=2048, type=83, bootable\n' | sfdisk -q "$img"
size=$(stat -c %s "$img")
loopdev=$(losetup -f --show -o "$offset" --sizelimit $((size - offset)) "$img")
uuid=$(cat /proc/sys/kernel/random/uuid)
# ^64bit: keep the file system readable by extlinux on every syslinux version.
mkfs.ext4 -q -F -L root -U "$uuid" -O ^64bit "$loopdev"
mkdir -p "$work/mnt"
mount "$loopdev" "$work/mnt"
rmdir "$work/mnt/lost+found"

# Hooks run on the host with the root file system as $1.
ca_hook='true'
if [ "${#host_cas[@]}" -gt 0 ]; then
  ca_hook="mkdir -p \"\$1/usr/local/share/ca-certificates\" && cp ${host_cas[*]} \"\$1/usr/local/share/ca-certificates/\" && chroot \"\$1\" update-ca-certificates >/dev/null"
fi
log "mmdebstrap $suite into the disk image"
# --skip=cleanup/apt/lists: keep today's package lists (see customize.sh).
mmdebstrap --mode=root --variant=minbase --quiet --skip=cleanup/apt/lists \
  --include="$(IFS=,; echo "${packages[*]}")" \
  --customize-hook="$ca_hook" \
  --customize-hook="sh $here/customize.sh \"\$1\" $uuid $insecure_key" \
  "${preload_hooks[@]}" \
  "$suite" "$work/mnt" \
  "deb $mirror $suite main" \
  "deb $mirror $suite-updates main" \
  "deb $security_mirror $suite-security main"

kernel=$(cd "$work/mnt/boot" && ls vmlinuz-* | sort -V | tail -1)
initrd=initrd.img-${kernel#vmlinuz-}
[ -e "$work/mnt/boot/$initrd" ] || die "no initrd for $kernel"
mkdir -p "$work/mnt/boot/extlinux"
cat >"$work/mnt/boot/extlinux/extlinux.conf" <<EOF
DEFAULT debian
PROMPT 0
TIMEOUT 0
LABEL debian
  LINUX /boot/$kernel
  INITRD /boot/$initrd
  APPEND root=UUID=$uuid ro quiet net.ifnames=0 biosdevname=0 console=tty0 console=ttyS0,115200n8
EOF
extlinux --install "$work/mnt/boot/extlinux" >/dev/null 2>&1
umount "$work/mnt"
losetup -d "$loopdev"; loopdev=
dd if="$mbr" of="$img" bs=440 count=1 conv=notrunc status=none

log "converting to qcow2"
mkdir -p "$work/box"
qemu-img convert -c -O qcow2 "$img" "$work/box/box.img"
rm -f "$img"
virtual_size=$disk_gib
cat >"$work/box/metadata.json" <<EOF
{"provider": "libvirt", "format": "qcow2", "virtual_size": $virtual_size}
EOF
ci_settings=
if [ -n "$preload" ]; then
  # The CI box's throwaway VMs: keep Vagrant's insecure key (replacing it costs
  # ~40 s of SSH round trips per VM under emulation) and let the host ignore the
  # guests' disk flushes (dpkg and MariaDB flush a lot).
  ci_settings='  config.ssh.insert_key = false
  config.vm.provider :libvirt do |libvirt|
    libvirt.disk_driver :cache => "unsafe"
  end'
fi
cat >"$work/box/Vagrantfile" <<EOF
# Built by xmpp-tool's lab/box/build.sh. The lab's Vagrantfile sets the rest.
Vagrant.configure("2") do |config|
  config.vm.provider :libvirt do |libvirt|
    libvirt.disk_bus = "virtio"
    libvirt.nic_model_type = "virtio"
  end
$ci_settings
end
EOF
tar -C "$work/box" -cf "$work/out.box" metadata.json Vagrantfile box.img
mkdir -p "$dest"
mv "$work/out.box" "$box"
log "built $box in $((SECONDS - start)) s ($(du -m "$box" | cut -f1) MiB)"
echo "$box"

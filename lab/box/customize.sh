#!/bin/sh
# mmdebstrap customize hook of lab/box/build.sh: turn the root file system in $1
# into a Vagrant box. Arguments: ROOTFS ROOT_FS_UUID INSECURE_PUBKEY
set -eu
[ -n "${1:-}" ] && [ "$1" != / ] || { echo "customize.sh: bad root" >&2; exit 1; }
root=$1 uuid=$2 pubkey=$3

echo "UUID=$uuid / ext4 errors=remount-ro 0 1" >"$root/etc/fstab"
echo debian >"$root/etc/hostname"
cat >"$root/etc/hosts" <<'EOF'
127.0.0.1	localhost
127.0.1.1	debian
::1		localhost ip6-localhost ip6-loopback
EOF

# Network: DHCP on the first NIC; Vagrant's Debian guest plugin appends the
# private network's static address to this file and runs ifup.
cat >"$root/etc/network/interfaces" <<'EOF'
source /etc/network/interfaces.d/*

auto lo
iface lo inet loopback

allow-hotplug eth0
iface eth0 inet dhcp
EOF

# The vagrant user: Vagrant's insecure key (Vagrant replaces it on first up),
# password-less sudo, no password login.
chroot "$root" useradd --create-home --shell /bin/bash --user-group vagrant
chroot "$root" usermod -p '*' vagrant
install -d -m 0700 "$root/home/vagrant/.ssh"
install -m 0600 "$pubkey" "$root/home/vagrant/.ssh/authorized_keys"
chroot "$root" chown -R vagrant:vagrant /home/vagrant/.ssh
printf 'vagrant ALL=(ALL) NOPASSWD:ALL\nDefaults:vagrant !requiretty\n' >"$root/etc/sudoers.d/vagrant"
chmod 0440 "$root/etc/sudoers.d/vagrant"

# sshd: no reverse DNS (nothing resolves in the lab), host keys made at first
# boot so that every VM from this box has its own (ed25519 and ECDSA only: RSA
# key generation takes tens of seconds under emulation).
mkdir -p "$root/etc/ssh/sshd_config.d"
printf '%s\n' 'UseDNS no' 'HostKey /etc/ssh/ssh_host_ed25519_key' \
  'HostKey /etc/ssh/ssh_host_ecdsa_key' >"$root/etc/ssh/sshd_config.d/vagrant.conf"
[ -n "$root" ] && [ "$root" != / ] && rm -f "$root"/etc/ssh/ssh_host_*
cat >"$root/etc/systemd/system/ssh-host-keys.service" <<'EOF'
[Unit]
Description=Generate SSH host keys at first boot
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/ssh_host_ed25519_key
ExecStart=/usr/bin/ssh-keygen -q -t ecdsa -N "" -f /etc/ssh/ssh_host_ecdsa_key

[Install]
WantedBy=multi-user.target
EOF
chroot "$root" systemctl enable ssh-host-keys.service ssh.service >/dev/null 2>&1

# Work systemd would otherwise do at first boot (ConditionNeedsUpdate=): hwdb,
# journal catalog; then mark /etc and /var as up to date with /usr.
chroot "$root" systemd-hwdb update
chroot "$root" journalctl --update-catalog
chroot "$root" /usr/lib/systemd/systemd-update-done

# A small initramfs with just what a virtio VM needs (the default, MODULES=most,
# is several times larger and slow to unpack under emulation).
sed -i 's/^MODULES=.*/MODULES=list/' "$root/etc/initramfs-tools/initramfs.conf"
printf '%s\n' virtio_pci virtio_blk virtio_scsi virtio_net ext4 >>"$root/etc/initramfs-tools/modules"
chroot "$root" update-initramfs -u -k all >/dev/null 2>&1

# A fresh machine-id per VM, quiet console, no downloaded packages in the image.
# The package lists stay: a box built today lets Salt skip its refresh of lists
# younger than a day (over a minute per VM under TCG); an older box refreshes.
: >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
chroot "$root" apt-get clean
rm -rf "$root"/tmp/* "$root"/var/log/*.log

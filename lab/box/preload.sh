#!/bin/sh
# mmdebstrap customize hook of `lab/box/build.sh SUITE --preload WHEELHOUSE`, run
# after customize.sh: makes the CI box. Arguments: ROOTFS CHECKOUT WHEELHOUSE PACKAGE...
#  * lab/bootstrap-salt.sh itself installs the pinned Salt into /opt/salt from the
#    wheelhouse, exactly as in a VM (so there it finds Salt and only configures);
#  * the formulas' packages are downloaded into apt's cache, not installed, so the
#    states still install them (as on a user's box) without waiting for the network.
set -eu
[ -n "${1:-}" ] && [ "$1" != / ] || { echo "preload.sh: bad root" >&2; exit 1; }
root=$1 repo=$2 wheels=$3
shift 3
src=/tmp/xmpp-lab-preload
py=$(basename "$wheels")
mkdir -p "$root$src/lab/state/wheelhouse/$py" "$root$src/pillar/lab"
cp "$repo/lab/bootstrap-salt.sh" "$repo/lab/manifest.py" "$root$src/lab/"
cp "$repo/pillar/lab/manifest.json" "$root$src/pillar/lab/"
cp "$wheels"/*.whl "$root$src/lab/state/wheelhouse/$py/"
chroot "$root" env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  HOME=/root XMPP_LAB_SRC=$src sh $src/lab/bootstrap-salt.sh
rm -rf "${root:?}$src"
# The box keeps the package lists of its build day (customize.sh), which these
# cached packages match.
chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
  --no-install-recommends --download-only "$@" >/dev/null
echo "preload.sh: Salt in /opt/salt; $(ls "$root"/var/cache/apt/archives/*.deb | wc -l) packages in apt's cache" >&2
# Throwaway CI VMs: dpkg need not fsync every unpacked file.
echo force-unsafe-io >"$root/etc/dpkg/dpkg.cfg.d/xmpp-lab-ci-unsafe-io"

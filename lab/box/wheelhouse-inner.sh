#!/bin/sh
# Runs inside the throwaway chroot of lab/box/wheelhouse.sh: wheels for the
# given requirements, built with this Debian release's Python, plus a wheel of
# the pip that built them (lab/bootstrap-salt.sh runs pip from it). Output: /tmp/wheels
set -eu
export PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_DISABLE_PIP_VERSION_CHECK=1
python3 -m venv /tmp/v
pip_version=$(/tmp/v/bin/python -c 'import pip; print(pip.__version__)')
/tmp/v/bin/pip wheel -q -w /tmp/wheels "$@" "pip==$pip_version"

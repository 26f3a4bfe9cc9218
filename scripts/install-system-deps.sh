#!/usr/bin/env bash
# Installs the Debian packages the project needs that are not installed yet.
# Idempotent: does nothing (not even `apt-get update`) when everything is present.
# Runs as root without a TTY; uses sudo when run as another user.
set -euo pipefail

# Debian's openstack CLI drives the compatibility tests (test/cli).
# qemu-utils gives qemu-img, which the image service uses to inspect and convert images.
# qemu-system-x86, genisoimage (config drives) and socat (metadata forwarding) run real guests;
# busybox-static, linux-image-amd64, syslinux, mtools, dosfstools and fdisk build the test guest.
packages=(python3-openstackclient qemu-utils qemu-system-x86 genisoimage socat
  busybox-static linux-image-amd64 syslinux syslinux-common mtools dosfstools fdisk)

missing=()
for pkg in "${packages[@]}"; do
  # dpkg -s succeeds for removed-but-configured packages too; check the status line.
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$pkg")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  sudo=(sudo)
fi

echo "install-system-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}"

#!/usr/bin/env bash
# Builds the local test image tessera/busybox:local without a registry: a rootfs holding
# Debian's busybox-static (one static binary: a dynamic busybox fails in the image with
# "exec ... no such file or directory") and its applets as symlinks, given to `docker import`.
# Idempotent: does nothing when the image exists (TESSERA_IMAGE_REBUILD=1 rebuilds it).
#
# Note for users of the image: busybox 1.35's `wget -T N` segfaults; bound a download with
# `timeout N wget ...` instead.
set -euo pipefail

IMAGE="${TESSERA_IMAGE:-tessera/busybox:local}"
DOCKER=docker
[ -x /usr/bin/docker ] && DOCKER=/usr/bin/docker

say() { echo "docker-image: $*"; }
die() { echo "docker-image: $*" >&2; exit 1; }

"$DOCKER" info >/dev/null 2>&1 || die "no Docker engine answers: run scripts/docker-setup.sh first"

if [ "${TESSERA_IMAGE_REBUILD:-0}" != "1" ] && "$DOCKER" image inspect "$IMAGE" >/dev/null 2>&1; then
  say "$IMAGE exists"
  exit 0
fi

if ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'install ok installed'; then
  [ "$(id -u)" -eq 0 ] || die "busybox-static is missing: apt-get install busybox-static"
  say "installing busybox-static"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends busybox-static >/dev/null
fi
BUSYBOX=/bin/busybox
file -L "$BUSYBOX" 2>/dev/null | grep -q 'statically linked' || \
  { ldd "$BUSYBOX" 2>&1 | grep -q 'not a dynamic executable' || die "$BUSYBOX is not static: install busybox-static"; }

rootfs="$(mktemp -d /tmp/tessera-rootfs.XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT
mkdir -p "$rootfs"/{bin,sbin,etc,tmp,root,proc,sys,dev,var/www,usr/bin,usr/sbin}
chmod 1777 "$rootfs/tmp"
cp "$BUSYBOX" "$rootfs/bin/busybox"
# Every applet this busybox has, as a symlink in /bin (sh, httpd, wget, nc, sleep, cat, id, ...).
for applet in $("$BUSYBOX" --list); do
  [ "$applet" = busybox ] && continue
  ln -sf busybox "$rootfs/bin/$applet"
done
# Users for `--user`: root, and an unprivileged one (1000) to test the non-root posture.
printf 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/tmp:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\napp:x:1000:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
echo 'tessera test page' >"$rootfs/var/www/index.html"

# Image labels become user labels of every container run from it (see docs/docker.md).
# `docker import` takes Dockerfile instructions with --change.
tar -C "$rootfs" --numeric-owner -cf - . | "$DOCKER" import \
  --change 'ENV PATH=/bin:/sbin:/usr/bin:/usr/sbin' \
  --change 'LABEL org.tessera.image=busybox' \
  --change 'CMD ["/bin/sh"]' \
  - "$IMAGE" >/dev/null
say "built $IMAGE ($("$DOCKER" image inspect -f '{{.Size}}' "$IMAGE") bytes)"

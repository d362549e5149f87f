#!/bin/bash
# Runs the README's two commands as a new user would: on a fresh Debian 12
# (bookworm) made with debootstrap, from a fresh clone, as root, without
# ../shared (so tests/run tests Debian's tokio 1.24.2 alone, as it says).
#
#   tests/tools/fresh-debian12.sh CHROOT_DIR [REV]
#
# CHROOT_DIR is created with `debootstrap --variant=minbase bookworm` when it
# holds no system yet (needs debootstrap and the Debian mirror); git and
# ca-certificates are the only packages added by hand: everything else must
# come from demo/run's and tests/run's own apt step. REV (default HEAD) of
# this repository is cloned into CHROOT_DIR/root/taskdbg, replacing any
# earlier clone. /proc, /sys and /dev are bind-mounted for the run and
# unmounted after. Prints each command's exit code and time; exits 1 if one
# failed. Needs root. Not run by CI (it takes 30 to 60 minutes).
set -u
root=${1:?usage: fresh-debian12.sh CHROOT_DIR [REV]}
rev=${2:-HEAD}
src=$(cd "$(dirname "$0")/../.." && pwd)
if [ ! -x "$root/bin/bash" ]; then
  debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian || exit 2
fi
cleanup() {
  for m in dev/pts dev sys proc; do mountpoint -q "$root/$m" && umount "$root/$m"; done
}
trap cleanup EXIT
for m in proc sys dev dev/pts; do
  mountpoint -q "$root/$m" || mount --bind "/$m" "$root/$m"
done
cp /etc/resolv.conf "$root/etc/resolv.conf"
in_root() {
  chroot "$root" /usr/bin/env -i HOME=/root TERM=dumb \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin bash -c "$1"
}
in_root 'command -v git >/dev/null || { apt-get update -q && apt-get install -y -q --no-install-recommends git ca-certificates; } >/dev/null' || exit 2
rm -rf "$root/root/taskdbg"
git clone -q "$src" "$root/root/taskdbg" && git -C "$root/root/taskdbg" checkout -q "$rev" || exit 2
echo "fresh-debian12: $(git -C "$root/root/taskdbg" log -1 --format='%h %s')"
failed=0
for cmd in demo/run tests/run; do
  start=$SECONDS
  in_root "cd /root/taskdbg && $cmd"
  code=$?
  echo "fresh-debian12: $cmd exited $code after $((SECONDS - start)) s"
  [ $code -eq 0 ] || failed=1
done
exit $failed

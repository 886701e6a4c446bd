#!/bin/sh
# Build a minimal root filesystem from Debian's busybox-static: /bin/busybox plus a
# symlink per applet, and the few files a container expects. Usage: mkrootfs-busybox.sh DIR
set -eu
dir=${1:?usage: mkrootfs-busybox.sh DIR}
bb=/bin/busybox
[ -x "$bb" ] || { echo "busybox-static is not installed ($bb missing)" >&2; exit 1; }
tmp=$dir.tmp.$$
rm -rf "$tmp"
mkdir -p "$tmp/bin" "$tmp/etc" "$tmp/proc" "$tmp/sys" "$tmp/dev" "$tmp/tmp" "$tmp/root" "$tmp/var/www"
cp "$bb" "$tmp/bin/busybox"
for applet in $("$bb" --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$tmp/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$tmp/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$tmp/etc/group"
echo 'hello from reconciler' >"$tmp/var/www/index.html"
chmod 1777 "$tmp/tmp"
rm -rf "$dir"
mkdir -p "$(dirname "$dir")"
mv "$tmp" "$dir"
echo "busybox rootfs ready in $dir"

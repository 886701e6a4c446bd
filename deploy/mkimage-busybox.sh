#!/bin/sh
# Build a small OCI image offline from Debian's busybox-static, with umoci and skopeo only.
#
#   mkimage-busybox.sh [-r REF] DEST
#
# DEST is an OCI layout directory (created if missing; other images in it are kept) or, when
# it ends in .tar, an oci-archive. REF is the image's reference name inside DEST (default
# busybox:latest), so `reconciler image import oci:DEST:busybox:latest` needs no name.
#
# The image: /bin/busybox, a symlink per applet at its usual path, /etc/passwd and
# /etc/group (root, daemon, bin, sys, mail, www-data 33, operator, nobody 65534), /tmp,
# and /var/www/index.html; config Cmd ["sh"], Env PATH=..., WorkingDir /, like Docker's
# busybox. The build is reproducible: every mtime and the created time are fixed
# (SOURCE_DATE_EPOCH, default 946684800 = 2000-01-01), so the same busybox gives the same
# digest every time and running it again changes nothing (idempotent).
#
# Environment: BUSYBOX (default /bin/busybox, must be static), SOURCE_DATE_EPOCH.
set -eu

ref=busybox:latest
while getopts r: opt; do
  case $opt in
    r) ref=$OPTARG ;;
    *) echo "usage: mkimage-busybox.sh [-r REF] DEST" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
dest=${1:?usage: mkimage-busybox.sh [-r REF] DEST}
bb=${BUSYBOX:-/bin/busybox}
epoch=${SOURCE_DATE_EPOCH:-946684800}

for tool in umoci skopeo; do
  command -v "$tool" >/dev/null || { echo "$tool is not installed (apt-get install -y $tool)" >&2; exit 1; }
done
[ -x "$bb" ] || { echo "busybox-static is not installed ($bb missing)" >&2; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/mkimage-busybox.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
layout=$tmp/layout
bundle=$tmp/bundle

umoci init --layout "$layout"
umoci new --image "$layout:build"
umoci unpack --image "$layout:build" "$bundle"

root=$bundle/rootfs
mkdir -p "$root/bin" "$root/sbin" "$root/usr/bin" "$root/usr/sbin" "$root/etc" "$root/proc" \
  "$root/sys" "$root/dev" "$root/tmp" "$root/root" "$root/home" "$root/var/www"
cp "$bb" "$root/bin/busybox"
for applet in $("$bb" --list-full); do
  [ "$applet" = bin/busybox ] || [ -e "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
done
cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
mail:x:8:8:mail:/var/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
EOF
cat >"$root/etc/group" <<'EOF'
root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
wheel:x:10:root
mail:x:8:
www-data:x:33:
operator:x:37:
users:x:100:
nogroup:x:65534:
EOF
echo 'hello from reconciler' >"$root/var/www/index.html"
chmod 1777 "$root/tmp"
chmod 700 "$root/root"
find "$root" -exec touch -h -d "@$epoch" {} +

created=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)
umoci repack --image "$layout:build" --history.created "$created" \
  --history.created_by "mkimage-busybox.sh: $(basename "$bb") and its applets" "$bundle"
umoci config --image "$layout:build" --tag final --no-history --created "$created" \
  --config.cmd sh \
  --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --config.workingdir /

case $dest in
  *.tar) rm -f "$dest"; target=oci-archive:$dest:$ref ;;
  *) mkdir -p "$dest"; target=oci:$dest:$ref ;;
esac
skopeo copy --quiet "oci:$layout:final" "$target"
digest=$(skopeo inspect --format '{{.Digest}}' "$target")
echo "busybox image $ref ($digest) in $dest"

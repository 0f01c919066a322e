#!/bin/sh
# Build a minimal busybox root filesystem tarball from Debian's busybox-static.
# Usage: make-rootfs.sh OUT.tar
# The tarball is what `berth import` (and later `FROM scratch` + `ADD`) turns into
# the example image; nothing is fetched from a public registry.
set -eu
out=${1:?usage: make-rootfs.sh OUT.tar}
busybox=${BUSYBOX:-/bin/busybox}
[ -x "$busybox" ] || { echo "make-rootfs.sh: $busybox not found (apt-get install busybox-static)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
root=$tmp/rootfs
mkdir -p "$root/bin" "$root/sbin" "$root/usr/bin" "$root/usr/sbin" "$root/etc" \
         "$root/root" "$root/home" "$root/var/log" "$root/dev" "$root/proc" "$root/sys"
install -m 0755 "$busybox" "$root/bin/busybox"
# One symlink per applet, at the path busybox itself reports for it.
for applet in $("$busybox" --list-full); do
    [ -e "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
done
install -d -m 1777 "$root/tmp"
cat > "$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
PASSWD
cat > "$root/etc/group" <<'GROUP'
root:x:0:
daemon:x:1:
wheel:x:10:root
nogroup:x:65534:
GROUP
echo 'hosts: files dns' > "$root/etc/nsswitch.conf"
# Fixed owner and mtime so the same busybox gives the same layer digest.
tar --numeric-owner --owner=0 --group=0 --mtime=@0 --sort=name -C "$root" -cf "$out" .

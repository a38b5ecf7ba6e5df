#!/usr/bin/env bash
# Usage: tests/lab/fetch.sh [--refresh] [--quiet]
#
# Makes sure the lab cache holds everything the nested-SVM lab needs from
# Debian packages, downloading (apt-get download) and unpacking (dpkg-deb -x)
# only what is missing:
#   $CACHE/lab/vmlinuz          Debian cloud kernel (bzImage), outer and inner guest
#   $CACHE/lab/modules/         lib/modules/<version> of that kernel (uncompressed .ko)
#   $CACHE/lab/kernel-version   the kernel version string, e.g. 6.1.0-56-cloud-amd64
#   $CACHE/lab/busybox          busybox from busybox-static (static binary)
# CACHE is ${KITE_CACHE:-<repo>/.cache}. On success prints KEY=PATH lines
# (LAB_DIR, LAB_KERNEL, LAB_MODULES, LAB_KVER, LAB_BUSYBOX) that callers may eval.
#   --refresh  re-resolve the newest linux-image-cloud-amd64 dependency and
#              busybox-static and re-download them
#   --quiet    print nothing on success except the KEY=PATH lines
# Fails with a single "fetch.sh: ..." line on stderr if apt cannot deliver.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
CACHE=${KITE_CACHE:-$repo/.cache}
LAB=$CACHE/lab

refresh=0
quiet=0
for a in "$@"; do
	case $a in
	--refresh) refresh=1 ;;
	--quiet) quiet=1 ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "fetch.sh: unknown argument: $a" >&2; exit 2 ;;
	esac
done

die() { echo "fetch.sh: $*" >&2; exit 1; }
say() { [ "$quiet" = 1 ] || echo "fetch.sh: $*" >&2; }

mkdir -p "$LAB"
# one fetch at a time per cache (concurrent lab runs)
exec 9>"$LAB/.fetch.lock"
flock 9
# The cache ignores itself, so nothing outside it has to know about it.
[ -e "$CACHE/.gitignore" ] || echo '*' >"$CACHE/.gitignore"

# apt-get download PKG into $LAB; prints the path of the .deb.
# Run in a scratch dir that the _apt sandbox user can write to.
apt_download() {
	local pkg=$1 tmp deb
	tmp=$(mktemp -d "$LAB/dl.XXXXXX")
	chmod 0777 "$tmp"
	if ! (cd "$tmp" && apt-get download -q "$pkg" >"$tmp/log" 2>&1); then
		local why
		why=$(grep -E '^(E|W):' "$tmp/log" | head -1 || true)
		rm -rf "$tmp"
		die "apt-get download $pkg failed${why:+: $why} (try: apt-get update)"
	fi
	deb=$(find "$tmp" -maxdepth 1 -name '*.deb' | head -1)
	[ -n "$deb" ] || { rm -rf "$tmp"; die "apt-get download $pkg produced no .deb"; }
	mv -f "$deb" "$LAB/"
	rm -rf "$tmp"
	echo "$LAB/$(basename "$deb")"
}

command -v dpkg-deb >/dev/null || die "dpkg-deb not found (this needs a Debian-like host)"

# ---- kernel -----------------------------------------------------------------
have_kernel() {
	[ -s "$LAB/kernel-version" ] && [ -s "$LAB/vmlinuz" ] &&
		[ -f "$LAB/modules/kernel/arch/x86/kvm/kvm-amd.ko" ]
}

if [ "$refresh" = 1 ] || ! have_kernel; then
	command -v apt-get >/dev/null || die "apt-get not found"
	pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
		awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }' || true)
	[ -n "$pkg" ] || die "cannot resolve linux-image-cloud-amd64 via apt-cache (try: apt-get update)"
	kver=${pkg#linux-image-}
	say "fetching $pkg"
	deb=$(apt_download "$pkg")
	x=$(mktemp -d "$LAB/x.XXXXXX")
	dpkg-deb -x "$deb" "$x" || { rm -rf "$x"; die "dpkg-deb -x $deb failed"; }
	[ -f "$x/boot/vmlinuz-$kver" ] || { rm -rf "$x"; die "$deb has no boot/vmlinuz-$kver"; }
	[ -d "$x/lib/modules/$kver" ] || { rm -rf "$x"; die "$deb has no lib/modules/$kver"; }
	rm -rf "$LAB/kernel-pkg" "$LAB/modules" "$LAB/vmlinuz" "$LAB/kernel-version" "$LAB/inner"*.cpio.gz
	mv "$x" "$LAB/kernel-pkg"
	rm -f "$deb"
	ln -s "kernel-pkg/lib/modules/$kver" "$LAB/modules"
	ln -s "kernel-pkg/boot/vmlinuz-$kver" "$LAB/vmlinuz"
	echo "$kver" >"$LAB/kernel-version"
	for m in virt/lib/irqbypass.ko arch/x86/kvm/kvm.ko arch/x86/kvm/kvm-amd.ko drivers/net/tun.ko; do
		[ -f "$LAB/modules/kernel/$m" ] || die "kernel package lacks $m (compressed modules?)"
	done
fi

# ---- busybox ------------------------------------------------------------------
have_busybox() { [ -x "$LAB/busybox" ]; }

if [ "$refresh" = 1 ] || ! have_busybox; then
	command -v apt-get >/dev/null || die "apt-get not found"
	say "fetching busybox-static"
	deb=$(apt_download busybox-static)
	x=$(mktemp -d "$LAB/x.XXXXXX")
	dpkg-deb -x "$deb" "$x" || { rm -rf "$x"; die "dpkg-deb -x $deb failed"; }
	bb=
	for c in "$x/bin/busybox" "$x/usr/bin/busybox"; do [ -f "$c" ] && bb=$c && break; done
	[ -n "$bb" ] || { rm -rf "$x"; die "$deb has no busybox binary"; }
	rm -f "$LAB"/inner*.cpio.gz
	install -m 0755 "$bb" "$LAB/busybox.tmp" && mv -f "$LAB/busybox.tmp" "$LAB/busybox"
	rm -rf "$x" "$deb"
fi

echo "LAB_DIR=$LAB"
echo "LAB_KERNEL=$LAB/vmlinuz"
echo "LAB_MODULES=$LAB/modules"
echo "LAB_KVER=$(cat "$LAB/kernel-version")"
echo "LAB_BUSYBOX=$LAB/busybox"

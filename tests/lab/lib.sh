# shellcheck shell=bash
# Helpers shared by the lab scripts (sourced, not run).

# newc_entry NAME MODE [RDEVMAJOR RDEVMINOR]
# Writes one data-less newc cpio header (directory or device node) to stdout.
# Lets us put /dev/console into an initramfs without mknod (and so without root).
newc_entry() {
	local name=$1 mode=$2 maj=${3:-0} min=${4:-0}
	local namesize=$((${#name} + 1)) pad
	printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%s\0' \
		0 "$mode" 0 0 1 0 0 0 0 "$maj" "$min" "$namesize" 0 "$name"
	# header (110 bytes) + name + NUL is padded to a multiple of 4
	pad=$(((4 - (110 + namesize) % 4) % 4))
	[ "$pad" = 0 ] || head -c "$pad" /dev/zero
}

# pack_initramfs STAGEDIR OUT [GZIPLEVEL]
# Packs STAGEDIR (plus /dev and /dev/console c 5 1) as a newc cpio, gzipped
# with GZIPLEVEL (default 1; 0 = no compression), owned by root.
pack_initramfs() {
	local dir=$1 out=$2 level=${3:-1} tmp
	tmp=$(mktemp "$out.XXXXXX")
	{
		newc_entry dev $((0040755))
		newc_entry dev/console $((0020600)) 5 1
		(cd "$dir" && find . -mindepth 1 ! -path ./dev ! -path ./dev/console |
			LC_ALL=C sort | cpio -o -H newc --owner=0:0 --quiet)
	} | if [ "$level" = 0 ]; then cat; else gzip -n -"$level"; fi >"$tmp"
	chmod 0644 "$tmp"
	mv -f "$tmp" "$out"
}

# install_busybox BUSYBOX STAGEDIR
# Copies busybox to STAGEDIR/bin/busybox and creates relative applet symlinks
# at the paths `busybox --list-full` names (bin/sh, sbin/insmod, usr/bin/...).
install_busybox() {
	local bb=$1 dir=$2 app up
	mkdir -p "$dir/bin" "$dir/sbin" "$dir/usr/bin" "$dir/usr/sbin"
	install -m 0755 "$bb" "$dir/bin/busybox"
	while read -r app; do
		if [ -z "$app" ] || [ "$app" = bin/busybox ] || [ -e "$dir/$app" ] || [ -L "$dir/$app" ]; then
			continue
		fi
		case $app in
		*/*/*) up=../../bin/busybox ;;
		*/*) up=../bin/busybox ;;
		*) continue ;;
		esac
		ln -s "$up" "$dir/$app"
	done < <("$bb" --list-full)
}

# install_with_libs BINARY STAGEDIR [DESTPATH]
# Copies BINARY to STAGEDIR/DESTPATH (default: its own path) plus every
# shared library ldd resolves and the dynamic loader, each at the same path
# it has on the host. Static binaries are copied alone.
install_with_libs() {
	local bin=$1 dir=$2 dest=${3:-$1} lib out
	mkdir -p "$dir/$(dirname "$dest")"
	install -m 0755 "$bin" "$dir/$dest"
	if ! out=$(ldd "$bin" 2>/dev/null); then
		return 0 # not a dynamic executable
	fi
	if grep -q 'not found' <<<"$out"; then
		echo "lab: $bin: missing shared libraries:" >&2
		grep 'not found' <<<"$out" >&2
		return 1
	fi
	# "libx.so => /path (0x..)" and "/lib64/ld-linux-x86-64.so.2 (0x..)"
	while read -r lib; do
		[ -e "$dir/$lib" ] && continue
		mkdir -p "$dir/$(dirname "$lib")"
		cp -L "$lib" "$dir/$lib"
	done < <(awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$out")
}

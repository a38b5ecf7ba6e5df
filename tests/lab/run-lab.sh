#!/usr/bin/env bash
# Usage: tests/lab/run-lab.sh [--kite PATH] [--with-qemu] [--extra PATH]... [--bin PROG]...
#                             [--inner INITRD] [--timeout SECS] [--mem MIB] [--smp N]
#                             [--append ARGS] [--env NAME=VALUE]... [--log FILE]
#                             [--interactive] --script SCRIPT
#
# Runs SCRIPT inside the nested-SVM lab: QEMU (TCG, AMD EPYC CPU with SVM)
# boots Debian's cloud kernel with kvm_amd loaded, so /dev/kvm inside is a
# hardware-virtualization KVM that can boot real Linux guests.
#
# The outer initramfs holds:
#   busybox (+ applets), /lab/modules/{irqbypass,kvm,kvm-amd,tun}.ko
#   /lab/vmlinuz         the inner kernel (same Debian cloud kernel)
#   /lab/inner.cpio.gz   the inner initramfs (mkinitrd-inner.sh, cached; or --inner)
#   /bin/kite            --kite PATH, plus its shared libraries and loader
#   /usr/bin/qemu-system-x86_64 + libraries + microvm firmware (--with-qemu)
#   /lab/extra/<name>    each --extra file or directory
#   /lab/test.sh         SCRIPT
# Its /init mounts proc/sys/devtmpfs/devpts/tmpfs, insmods the modules
# (irqbypass kvm kvm-amd tun), brings lo up, prints "LAB: no /dev/kvm" if
# there is none, then "LAB: ready", runs `sh /lab/test.sh` in /lab with
# LAB_KERNEL, LAB_INITRD, LAB_EXTRA (and KITE if present, and every --env)
# exported, prints
# "LAB: done rc=<rc>" and powers off.
#
# Serial output streams to stdout (and to --log FILE if given).
# Exit status: 0 if "LAB: done rc=0" was seen; the script's rc if it failed;
# 124 on timeout; 125 if the lab ended without a "LAB: done" line.
#
#   --kite PATH     kite binary to install as /bin/kite
#   --with-qemu     also install QEMU so SCRIPT can run the peer VMM
#                   (qemu-system-x86_64 -M microvm -accel kvm ...)
#   --extra PATH    file/dir to copy to /lab/extra/ (repeatable)
#   --bin PROG      a host program (e.g. curl) to install as /usr/bin/PROG with its
#                   shared libraries (repeatable)
#   --inner FILE    use FILE as /lab/inner.cpio.gz instead of the default
#   --timeout SECS  kill QEMU after SECS seconds (default 600)
#   --mem MIB       outer VM memory (default 6144, room for a 4 GiB inner guest)
#   --smp N         outer vCPUs (default 2)
#   --append ARGS   extra outer kernel command-line arguments
#   --env N=V       export N=V to SCRIPT (repeatable)
#   --log FILE      also write the serial output to FILE
#   --interactive   connect stdin to the serial console
# Environment: KITE_CACHE (default <repo>/.cache), QEMU (default qemu-system-x86_64),
# LAB_GZIP (gzip level for the outer initramfs, default 0 = uncompressed).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/lab/lib.sh
. "$here/lib.sh"

usage() { sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
need() { [ "$2" -ge 2 ] || { echo "run-lab.sh: $1 needs an argument" >&2; exit 2; }; }

kite=
with_qemu=0
extras=()
bins=()
inner=
timeout_s=600
mem=6144
smp=2
append=
log=
interactive=0
envs=()
script=
while [ $# -gt 0 ]; do
	case $1 in
	--kite) need "$1" $#; kite=$2; shift 2 ;;
	--with-qemu) with_qemu=1; shift ;;
	--extra) need "$1" $#; extras+=("$2"); shift 2 ;;
	--bin) need "$1" $#; bins+=("$2"); shift 2 ;;
	--inner) need "$1" $#; inner=$2; shift 2 ;;
	--timeout) need "$1" $#; timeout_s=$2; shift 2 ;;
	--mem) need "$1" $#; mem=$2; shift 2 ;;
	--smp) need "$1" $#; smp=$2; shift 2 ;;
	--append) need "$1" $#; append=$2; shift 2 ;;
	--log) need "$1" $#; log=$2; shift 2 ;;
	--env)
		need "$1" $#
		[[ $2 =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || { echo "run-lab.sh: --env wants NAME=VALUE, got: $2" >&2; exit 2; }
		envs+=("$2")
		shift 2
		;;
	--interactive) interactive=1; shift ;;
	--script) need "$1" $#; script=$2; shift 2 ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "run-lab.sh: unknown argument: $1" >&2; usage ;;
	esac
done
[ -n "$script" ] || usage
[ -f "$script" ] || { echo "run-lab.sh: no such script: $script" >&2; exit 2; }
[ -z "$kite" ] || [ -f "$kite" ] || { echo "run-lab.sh: no such kite binary: $kite" >&2; exit 2; }
[ -z "$inner" ] || [ -f "$inner" ] || { echo "run-lab.sh: no such initramfs: $inner" >&2; exit 2; }
for e in "${extras[@]}"; do
	[ -e "$e" ] || { echo "run-lab.sh: no such extra: $e" >&2; exit 2; }
done
QEMU=${QEMU:-qemu-system-x86_64}
command -v "$QEMU" >/dev/null || { echo "run-lab.sh: $QEMU not found (apt-get install qemu-system-x86)" >&2; exit 2; }

zlevel=${LAB_GZIP:-0}
t0=$(date +%s.%N)
eval "$("$here/fetch.sh" --quiet)"

secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

# newer_than OUT INPUT... : true if OUT exists and is newer than every INPUT
newer_than() {
	local out=$1 f
	shift
	[ -s "$out" ] || return 1
	for f in "$@"; do [ "$out" -nt "$f" ] || return 1; done
}

work=$(mktemp -d "${TMPDIR:-/tmp}/kite-lab.XXXXXX")
trap 'rm -rf "$work"' EXIT

# ---- cached parts of the outer initramfs ------------------------------------------
# The kernel accepts concatenated cpio archives, so the big, rarely changing
# parts are packed once into the cache and only the per-run part is rebuilt.
# Not compressed by default (LAB_GZIP=0): QEMU loads the initrd at host
# speed, while the outer kernel would inflate it under TCG; measured, the
# uncompressed outer initramfs boots about 1-2 s faster with --with-qemu
# and no slower without it. LAB_GZIP=N picks gzip -N instead.

# serialize cache rebuilds between concurrent lab runs
exec 9>"$LAB_DIR/.build.lock"
flock 9

if [ -z "$inner" ]; then
	inner=$LAB_DIR/inner.cpio.gz
	if ! newer_than "$inner" "$here/mkinitrd-inner.sh" "$here/lib.sh" "$LAB_BUSYBOX"; then
		"$here/mkinitrd-inner.sh" "$inner" >/dev/null
	fi
fi

base=$LAB_DIR/outer-base.z$zlevel.cpio
if ! newer_than "$base" "$0" "$here/lib.sh" "$LAB_BUSYBOX" "$LAB_DIR/kernel-version"; then
	s=$work/base
	install_busybox "$LAB_BUSYBOX" "$s"
	mkdir -p "$s"/{proc,sys,tmp,root,etc,lab/modules,lab/extra}
	echo "root:x:0:0:root:/root:/bin/sh" >"$s/etc/passwd"
	for m in virt/lib/irqbypass.ko arch/x86/kvm/kvm.ko arch/x86/kvm/kvm-amd.ko drivers/net/tun.ko; do
		cp "$LAB_MODULES/kernel/$m" "$s/lab/modules/"
	done
	cp -L "$LAB_KERNEL" "$s/lab/vmlinuz"
	cat >"$s/init" <<'EOF'
#!/bin/sh
# kite lab outer init (generated by tests/lab/run-lab.sh)
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs tmpfs /tmp
for m in irqbypass kvm kvm-amd tun; do
	insmod /lab/modules/$m.ko || echo "LAB: insmod $m failed"
done
ip link set lo up 2>/dev/null
[ -c /dev/kvm ] || echo "LAB: no /dev/kvm"
echo "LAB: uptime $(cut -d' ' -f1 /proc/uptime)"
echo "LAB: ready"
export LAB_KERNEL=/lab/vmlinuz LAB_INITRD=/lab/inner.cpio.gz LAB_EXTRA=/lab/extra
[ -x /bin/kite ] && export KITE=/bin/kite
[ -f /lab/env ] && . /lab/env
cd /lab
sh /lab/test.sh
rc=$?
echo "LAB: done rc=$rc"
echo "LAB: uptime $(cut -d' ' -f1 /proc/uptime)"
poweroff -f
EOF
	chmod 0755 "$s/init"
	pack_initramfs "$s" "$base" "$zlevel"
fi

parts=("$base")

if [ "$with_qemu" = 1 ]; then
	qbin=$(command -v "$QEMU")
	qbin=$(readlink -f "$qbin")
	qpart=$LAB_DIR/outer-qemu.z$zlevel.cpio
	if ! newer_than "$qpart" "$0" "$here/lib.sh" "$qbin"; then
		s=$work/qemu
		# QEMU finds firmware and modules relative to its binary
		# (/usr/bin/../share/qemu); with -M microvm -kernel it reads
		# bios-microvm.bin (qboot) and linuxboot_dma.bin.
		install_with_libs "$qbin" "$s" /usr/bin/qemu-system-x86_64
		mkdir -p "$s/usr/share/qemu"
		for f in bios-microvm.bin qboot.rom linuxboot_dma.bin linuxboot.bin pvh.bin kvmvapic.bin; do
			[ -e "/usr/share/qemu/$f" ] && cp -L "/usr/share/qemu/$f" "$s/usr/share/qemu/$f"
		done
		[ -f "$s/usr/share/qemu/bios-microvm.bin" ] ||
			{ echo "run-lab.sh: /usr/share/qemu/bios-microvm.bin missing (qemu-system-data/qboot)" >&2; exit 2; }
		pack_initramfs "$s" "$qpart" "$zlevel"
	fi
	parts+=("$qpart")
fi

flock -u 9

# ---- per-run part ------------------------------------------------------------------
s=$work/run
mkdir -p "$s/lab/extra"
cp -L "$inner" "$s/lab/inner.cpio.gz"
install -m 0644 "$script" "$s/lab/test.sh"
for e in "${envs[@]}"; do
	# export NAME='VALUE' with embedded single quotes escaped
	printf "export %s='%s'\n" "${e%%=*}" "$(printf '%s' "${e#*=}" | sed "s/'/'\\\\''/g")"
done >"$s/lab/env"
if [ -n "$kite" ]; then
	install_with_libs "$kite" "$s" /bin/kite
fi
for b in "${bins[@]}"; do
	path=$(command -v "$b") || { echo "run-lab.sh: --bin: no such program: $b" >&2; exit 2; }
	install_with_libs "$path" "$s" "/usr/bin/$(basename "$path")"
done
for e in "${extras[@]}"; do
	cp -a "$e" "$s/lab/extra/"
done
pack_initramfs "$s" "$work/run.cpio" "$zlevel"
parts+=("$work/run.cpio")
cat "${parts[@]}" >"$work/outer.cpio"

t1=$(date +%s.%N)
echo "run-lab.sh: initramfs $(du -k "$work/outer.cpio" | cut -f1) KiB, built in $(secs "$t0" "$t1") s" >&2

# ---- run ---------------------------------------------------------------------------
out=${log:-$work/serial.log}
# EPYC minus the features TCG lacks (keeps QEMU from warning about each)
cpu=EPYC,rdseed=off,sha-ni=off,fxsr-opt=off,misalignsse=off,3dnowprefetch=off,osvw=off,topoext=off,nrip-save=off,xsavec=off
cmd=(timeout --foreground -k 5 "$timeout_s" "$QEMU" -M q35 -accel tcg -cpu "$cpu"
	-m "$mem" -smp "$smp" -nic none -nographic -no-reboot
	-kernel "$LAB_KERNEL" -initrd "$work/outer.cpio"
	-append "console=ttyS0 panic=-1 quiet${append:+ $append}")
set +e
if [ "$interactive" = 1 ]; then
	"${cmd[@]}" | tee "$out"
else
	"${cmd[@]}" </dev/null | tee "$out"
fi
qrc=${PIPESTATUS[0]}
set -e
t2=$(date +%s.%N)
echo >&2
echo "run-lab.sh: qemu exit $qrc, lab ran $(secs "$t1" "$t2") s, total $(secs "$t0" "$t2") s" >&2

if [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then
	echo "run-lab.sh: TIMEOUT after $timeout_s s" >&2
	exit 124
fi
rc=$(tr -d '\r' <"$out" | sed -n 's/^LAB: done rc=\([0-9][0-9]*\)$/\1/p' | tail -1)
if [ -z "$rc" ]; then
	echo "run-lab.sh: FAIL: the lab ended without 'LAB: done'" >&2
	exit 125
fi
if [ "$rc" != 0 ]; then
	echo "run-lab.sh: FAIL: test script exited $rc" >&2
	exit "$rc"
fi
exit 0

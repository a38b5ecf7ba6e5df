#!/usr/bin/env bash
# Usage: bench/lab-virtio.sh [-n REPS] [--disk-mib MIB] [--net-mib MIB] [--rand-secs S]
#                            [--only blk|net] [--timeout SECS] [--log FILE]
#
# virtio-blk and virtio-net through kite and through QEMU, the same Debian guest,
# the same disk image and the same TAP set-up, side by side in ONE nested-SVM lab
# run (tests/lab/run-lab.sh --with-qemu), REPS times each (default 2), alternating
# which VMM goes first:
#
#   kite  kite run --kernel $LAB_KERNEL --initrd INNER --cpus 1 --mem 256
#              --disk /tmp/disk.img --net tap=tapv
#   QEMU  qemu-system-x86_64 -M microvm,pcie=on -accel kvm -nodefaults -no-user-config
#              -nographic -serial stdio -kernel ... -m 256 -smp 1
#              -drive id=d0,file=/tmp/disk.img,format=raw,if=none (cache: QEMU's default, writeback)
#              -device virtio-blk-pci,drive=d0,disable-legacy=on
#              -netdev tap,id=n0,ifname=tapv,script=no,downscript=no (vhost off: QEMU's default)
#              -device virtio-net-pci,netdev=n0,romfile=,disable-legacy=on (modern-only, like kite)
#   both: virtio 1.x over PCI with MSI-X; the image lives in the outer VM's tmpfs.
#
# The guest (the lab's inner initramfs plus build/bench/vbench) runs, each phase
# between "VB-PHASE NAME begin/end" console lines:
#   seqread   vbench seqread /dev/vda MIB    1 MiB O_DIRECT reads  -> MB/s
#   seqwrite  vbench seqwrite /dev/vda MIB   1 MiB O_DIRECT writes + fdatasync -> MB/s
#   randread  vbench randread /dev/vda S     4 KiB O_DIRECT random reads, QD1 -> IOPS
#   tx        vbench send 10.0.0.1 5002 MIB  guest -> outer VM over TCP -> MB/s
#   rx        vbench send 10.0.0.2 5001 MIB  outer VM -> guest           -> MB/s
# Userspace exits per I/O: the outer VM reads KVM's per-VM counters of exits that
# went to the VMM (debugfs kvm/<pid>-<fd>/io_exits + mmio_exits) at each begin and
# end, less those of an empty phase (the console lines that mark a phase are
# port I/O exits of their own); I/Os are the guest's completed requests for the
# phase (/sys/block/vda/stat reads+writes) or packets (eth0 tx_packets+rx_packets).
# The table shows medians.
# Absolute numbers are TCG numbers (slow); the kite/QEMU ratios are what counts.
#
#   -n REPS          runs per VMM (default 2)
#   --disk-mib MIB   sequential read/write size (default 64)
#   --net-mib MIB    TCP transfer size each way (default 32)
#   --rand-secs S    random-read duration (default 4)
#   --only blk|net   one half only
#   --timeout SECS   whole lab run (default 600 + REPS * 2 * 300)
#   --log FILE       keep the lab's serial log
# Environment: KITE (binary to test; default: `make` and build/kite), QEMU.
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

reps=2 disk_mib=64 net_mib=32 rand_secs=4 only= timeout_s= log=
while [ $# -gt 0 ]; do
	case $1 in
	-n) reps=${2:?-n needs a number}; shift 2 ;;
	--disk-mib) disk_mib=${2:?}; shift 2 ;;
	--net-mib) net_mib=${2:?}; shift 2 ;;
	--rand-secs) rand_secs=${2:?}; shift 2 ;;
	--only) only=${2:?}; shift 2 ;;
	--timeout) timeout_s=${2:?}; shift 2 ;;
	--log) log=${2:?}; shift 2 ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) die "unknown argument: $1 (see --help)" ;;
	esac
done
[ "$reps" -gt 0 ] || die "REPS must be positive"
case $only in "" | blk | net) ;; *) die "--only: blk or net" ;; esac
timeout_s=${timeout_s:-$((600 + reps * 2 * 300))}
lab=$REPO/tests/lab/run-lab.sh
mkinner=$REPO/tests/lab/mkinitrd-inner.sh
need_cmd "$QEMU" "apt-get install qemu-system-x86"
build
tmp=$(mktemp -d "${TMPDIR:-/tmp}/kite-labvirtio.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
serial=${log:-$tmp/serial.log}

# The guest side: runs the phases the command line names (kite.vb=blk,net).
cat >"$tmp/guest.sh" <<EOF
DISK_MIB=$disk_mib NET_MIB=$net_mib RAND_SECS=$rand_secs
EOF
cat >>"$tmp/guest.sh" <<'EOF'
vb=
for w in $(cat /proc/cmdline); do case $w in kite.vb=*) vb=${w#kite.vb=} ;; esac; done
ios_blk() { awk '{ print $1 + $5 }' /sys/block/vda/stat; }
ios_net() { echo $(($(cat /sys/class/net/eth0/statistics/tx_packets) + $(cat /sys/class/net/eth0/statistics/rx_packets))); }
phase() { # phase NAME KIND CMD...: markers around CMD, the outer VM samples exits at each
	name=$1 kind=$2
	shift 2
	a=$(ios_$kind)
	echo "VB-PHASE $name begin"
	sleep 1
	out=$("$@" 2>&1)
	b=$(ios_$kind)
	echo "VB-PHASE $name end"
	echo "VB-GUEST $name ios=$((b - a)) $out"
	sleep 1
}
# the markers' own cost (console output is exits too): a phase that does nothing
phase marker blk true
case ,$vb, in *,blk,*)
	phase seqread blk vbench seqread /dev/vda "$DISK_MIB"
	phase seqwrite blk vbench seqwrite /dev/vda "$DISK_MIB"
	phase randread blk vbench randread /dev/vda "$RAND_SECS"
	;;
esac
case ,$vb, in *,net,*)
	ip link set eth0 up
	ip addr add 10.0.0.2/24 dev eth0
	phase tx net timeout 120 vbench send 10.0.0.1 5002 "$NET_MIB"
	timeout 120 vbench recv 5001 >/tmp/rx.out 2>&1 &
	echo "VB-NET rx-listening"
	a=$(ios_net)
	echo "VB-PHASE rx begin"
	wait
	b=$(ios_net)
	echo "VB-PHASE rx end"
	echo "VB-GUEST rx ios=$((b - a)) $(grep VBENCH /tmp/rx.out | tail -1)"
	sleep 1
	;;
esac
echo "VB-DONE"
EOF
"$mkinner" --extra-script "$tmp/guest.sh" --add "$BB/vbench:/bin/vbench" "$tmp/inner.cpio.gz" >/dev/null ||
	die "building the inner initramfs failed"

# The outer side (busybox sh inside the lab).
cat >"$tmp/lab.sh" <<EOF
REPS=$reps NET_MIB=$net_mib ONLY=$only
EOF
cat >>"$tmp/lab.sh" <<'EOF'
dmesg -n 1 2>/dev/null
VB=$LAB_EXTRA/vbench
mount -t debugfs none /sys/kernel/debug 2>/dev/null
dd if=/dev/zero of=/tmp/disk.img bs=1M count=256 2>/dev/null
tunctl -t tapv >/dev/null && ip addr add 10.0.0.1/24 dev tapv && ip link set tapv up
case $ONLY in blk) what=blk ;; net) what=net ;; *) what=blk,net ;; esac
CMD="console=ttyS0 reboot=k panic=1 quiet kite.action=poweroff kite.vb=$what"
# the exits that reached the VMM so far: KVM's per-VM debugfs directory of PID
exits() { d=$(ls -d /sys/kernel/debug/kvm/$1-* 2>/dev/null | head -1)
	[ -n "$d" ] && echo $(($(cat "$d/io_exits") + $(cat "$d/mmio_exits"))) || echo -; }
run_one() {
	vmm=$1 i=$2 con=/tmp/con.$1.$2
	$VB recv 5002 >/tmp/txrecv.out 2>&1 &
	rpid=$!
	case $vmm in
	kite) kite run --kernel "$LAB_KERNEL" --initrd "$LAB_INITRD" --cpus 1 --mem 256 --cmdline "$CMD" \
		--disk /tmp/disk.img --net tap=tapv >"$con" 2>&1 & ;;
	qemu) qemu-system-x86_64 -M microvm,pcie=on -accel kvm -nodefaults -no-user-config -nographic \
		-serial stdio -kernel "$LAB_KERNEL" -initrd "$LAB_INITRD" -m 256 -smp 1 -append "$CMD" -no-reboot \
		-drive id=d0,file=/tmp/disk.img,format=raw,if=none -device virtio-blk-pci,drive=d0,disable-legacy=on \
		-netdev tap,id=n0,ifname=tapv,script=no,downscript=no -device virtio-net-pci,netdev=n0,romfile=,disable-legacy=on \
		>"$con" 2>&1 & ;;
	esac
	pid=$!
	seen=0 t=0
	while kill -0 $pid 2>/dev/null && [ $t -lt 3000 ]; do
		# complete lines only: the last one may still be being written
		tr -d '\r' <"$con" | sed '$d' | grep -E '^VB-(PHASE|NET)' >/tmp/marks 2>/dev/null
		n=$(wc -l </tmp/marks)
		while [ "$seen" -lt "$n" ]; do
			seen=$((seen + 1))
			line=$(sed -n "${seen}p" /tmp/marks)
			case $line in
			"VB-NET rx-listening") $VB send 10.0.0.2 5001 "$NET_MIB" >/tmp/rxsend.out 2>&1 & ;;
			"VB-PHASE "*) set -- $line; echo "VB-EXITS $vmm $i $2 $3 $(exits $pid)" ;;
			esac
		done
		sleep 0.1
		t=$((t + 1))
	done
	kill $pid 2>/dev/null; wait $pid 2>/dev/null
	kill $rpid 2>/dev/null
	tr -d '\r' <"$con" | grep '^VB-GUEST' | sed "s/^VB-GUEST/VB-RES $vmm $i/"
	grep -q VB-DONE "$con" || { echo "VB-FAIL $vmm $i"; tail -20 "$con" | sed "s/^/VB-LOG $vmm: /"; }
}
i=1
while [ "$i" -le "$REPS" ]; do
	if [ $((i % 2)) = 1 ]; then order="kite qemu"; else order="qemu kite"; fi
	for vmm in $order; do run_one $vmm $i; done
	i=$((i + 1))
done
EOF

say "one lab run: $reps runs each of kite and QEMU (lab timeout ${timeout_s} s)"
"$lab" --with-qemu --kite "$KITE" --inner "$tmp/inner.cpio.gz" --extra "$BB/vbench" \
	--timeout "$timeout_s" --script "$tmp/lab.sh" --log "$serial" >/dev/null 2>&1 || say "the lab ended with status $? (see --log)"
tr -d '\r' <"$serial" >"$tmp/s"
grep -q '^VB-FAIL' "$tmp/s" && grep -E '^VB-(FAIL|LOG)' "$tmp/s" >&2

# value VMM PHASE FIELD: per-run values
#   mbs: MB/s (bytes / secs / 1e6); iops: ops / secs; epio: exits per I/O
vals() {
	awk -v v="$1" -v p="$2" -v f="$3" '
	$1 == "VB-EXITS" && $2 == v && $4 == p { e[$3, $5] = $6 }
	$1 == "VB-EXITS" && $2 == v && $4 == "marker" { m[$3, $5] = $6 }
	$1 == "VB-RES" && $2 == v && $4 == p {
		split($5, io, "="); bytes = $8; ops = $9; secs = $10
		if (f == "mbs") print bytes / secs / 1e6
		else if (f == "iops") print ops / secs
		else if (f == "epio" && io[2] > 0 && e[$3, "begin"] ~ /^[0-9]+$/ && e[$3, "end"] ~ /^[0-9]+$/ &&
			 m[$3, "begin"] ~ /^[0-9]+$/ && m[$3, "end"] ~ /^[0-9]+$/) {
			x = (e[$3, "end"] - e[$3, "begin"]) - (m[$3, "end"] - m[$3, "begin"])
			print (x < 0 ? 0 : x) / io[2]
		}
	}' "$tmp/s"
}
med() { local v; v=$(vals "$@"); [ -n "$v" ] || { echo -; return; }; echo "$v" | median | awk '{ printf "%.2f", $1 }'; }
row() { # row LABEL PHASE FIELD
	local k q
	k=$(med kite "$2" "$3") q=$(med qemu "$2" "$3")
	printf '%-28s %10s %10s %8s\n' "$1" "${k:--}" "${q:--}" "$(ratio "${k:--}" "${q:--}")"
}
echo
echo "== virtio through kite and QEMU, Debian guest in the nested-SVM lab ($reps runs each, medians)"
echo "   $(date -u '+%Y-%m-%d %H:%M UTC'), $(machine_desc); TCG-emulated host: compare ratios only"
printf '%-28s %10s %10s %8s\n' "" "kite" "QEMU" "kite/QEMU"
if [ "$only" != net ]; then
	row "blk seq read MB/s ($disk_mib MiB)" seqread mbs
	row "blk seq write MB/s" seqwrite mbs
	row "blk 4 KiB random read IOPS" randread iops
	row "blk exits/IO, seq read" seqread epio
	row "blk exits/IO, seq write" seqwrite epio
	row "blk exits/IO, random read" randread epio
fi
if [ "$only" != blk ]; then
	row "net TCP guest->host MB/s" tx mbs
	row "net TCP host->guest MB/s" rx mbs
	row "net exits/packet, tx" tx epio
	row "net exits/packet, rx" rx epio
fi
echo "   goal: kite >= QEMU on throughput rows, fewer exits per I/O"

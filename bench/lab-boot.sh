#!/usr/bin/env bash
# Usage: bench/lab-boot.sh [-n BOOTS] [--timeout SECS] [--boot-timeout SECS]
#                          [--qemu-args "ARGS"] [--log FILE]
#
# Boots Debian's cloud kernel with the lab's busybox initramfs through kite and
# through QEMU microvm, side by side in ONE nested-SVM lab run (tests/lab/run-lab.sh
# --with-qemu), BOOTS times each (default 3), alternating which VMM goes first:
#
#   kite  kite run --kernel $LAB_KERNEL --initrd $LAB_INITRD --cpus 1 --mem 128
#              --cmdline "$CMDLINE" --boot-timer
#   QEMU  qemu-system-x86_64 -M microvm -accel kvm -nodefaults -no-user-config -nographic
#              -serial stdio -kernel $LAB_KERNEL -initrd $LAB_INITRD -m 128 -smp 1
#              -append "$CMDLINE" -no-reboot [--qemu-args]
#   CMDLINE = console=ttyS0 reboot=k panic=1 quiet kite.action=poweroff
#
# kite.action=poweroff makes the guest's /init power off (ACPI S5) instead of
# `reboot -f`: QEMU microvm has no i8042, so with reboot=k the guest's reboot
# never reaches QEMU and it runs until killed; kite handles both.
# Inside the lab, build/bench/bootwatch (static) spawns each VMM and timestamps,
# from just before the spawn: the line "KITE-GUEST: init-reached" on the VMM's
# output (to-init) and the VMM's exit (to-exit); it also reports the VMM's CPU time.
# kite's own boot-timer figure (guest's write to 0xC0000000 early in /init, from
# kite's main()) is shown too. The guest is the lab's inner initramfs rebuilt by
# tests/lab/mkinitrd-inner.sh with one extra script, run right after the marker,
# that prints "KITE-GUEST: uptime <guest /proc/uptime>": the guest's own clock
# (started early in the kernel) at that point. "pre-kernel" = when that line
# arrived minus the uptime it reports: VMM start-up, firmware, the kernel's
# decompression and early set-up, before the kernel's clock runs.
# The table gives medians and kite/QEMU ratios.
# Absolute times in the lab are TCG times (slow); only the ratio means anything.
#
#   -n BOOTS            boots per VMM (default 3)
#   --timeout SECS      whole lab run (default 300 + BOOTS * 2 * 150)
#   --boot-timeout SECS one boot (default 240), then the VMM is killed
#   --qemu-args "ARGS"  extra QEMU arguments (e.g. "-cpu host")
#   --log FILE          keep the lab's serial log
# Environment: KITE (binary to test; default: `make` and build/kite), QEMU.
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

boots=3
timeout_s=
boot_timeout=240
qemu_args=
log=
while [ $# -gt 0 ]; do
	case $1 in
	-n) boots=${2:?-n needs a number}; shift 2 ;;
	--timeout) timeout_s=${2:?--timeout needs seconds}; shift 2 ;;
	--boot-timeout) boot_timeout=${2:?--boot-timeout needs seconds}; shift 2 ;;
	--qemu-args) qemu_args=${2?--qemu-args needs a value}; shift 2 ;;
	--log) log=${2:?--log needs a file}; shift 2 ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) die "unknown argument: $1 (see --help)" ;;
	esac
done
[ "$boots" -gt 0 ] || die "BOOTS must be positive"
timeout_s=${timeout_s:-$((300 + boots * 2 * 150))}

lab=$REPO/tests/lab/run-lab.sh
mkinner=$REPO/tests/lab/mkinitrd-inner.sh
[ -x "$lab" ] || die "no lab runner at $lab"
[ -x "$mkinner" ] || die "no inner-initramfs builder at $mkinner"
need_cmd "$QEMU" "apt-get install qemu-system-x86: the lab runs in QEMU and QEMU is the peer"
[ -f /usr/share/qemu/bios-microvm.bin ] || die "/usr/share/qemu/bios-microvm.bin missing (apt-get install qemu-system-data): QEMU microvm needs it"
build

tmp=$(mktemp -d "${TMPDIR:-/tmp}/kite-labboot.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
serial=${log:-$tmp/serial.log}

# The lab's inner initramfs plus a script that reports the guest's uptime.
cat >"$tmp/uptime.sh" <<'EOF'
#!/bin/sh
echo "KITE-GUEST: uptime $(cut -d' ' -f1 /proc/uptime)"
EOF
"$mkinner" --extra-script "$tmp/uptime.sh" "$tmp/inner.cpio.gz" >/dev/null ||
	die "building the inner initramfs failed (tests/lab/mkinitrd-inner.sh)"

# The script the lab runs (busybox sh). Results go to the console as BENCHRES lines.
cat >"$tmp/inner.sh" <<EOF
BOOTS=$boots
BOOT_TIMEOUT=$boot_timeout
QEMU_ARGS='${qemu_args//\'/}'
EOF
cat >>"$tmp/inner.sh" <<'EOF'
# bench/lab-boot.sh, inside the lab
CMDLINE="console=ttyS0 reboot=k panic=1 quiet kite.action=poweroff"
MARK="KITE-GUEST: init-reached"
UPMARK="KITE-GUEST: uptime"
BW=$LAB_EXTRA/bootwatch
KITE_BIN=${KITE:-kite}
dmesg -n 1 2>/dev/null # keep the outer kernel's messages off the console
echo "BENCHINFO kernel $(uname -r) cpu $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2)"

run_one() {
	vmm=$1 i=$2 out=/tmp/bw.$1.$2 log=/tmp/log.$1.$2
	case $vmm in
	kite)
		$BW -t "$BOOT_TIMEOUT" -o "$log" -m "$MARK" -m "$UPMARK" -- "$KITE_BIN" run --kernel "$LAB_KERNEL" \
			--initrd "$LAB_INITRD" --cpus 1 --mem 128 --cmdline "$CMDLINE" --boot-timer >"$out"
		unset LD_PRELOAD
		;;
	qemu)
		# shellcheck disable=SC2086 # QEMU_ARGS is a word list
		$BW -t "$BOOT_TIMEOUT" -o "$log" -m "$MARK" -m "$UPMARK" -- qemu-system-x86_64 -M microvm -accel kvm \
			-nodefaults -no-user-config -nographic -serial stdio -kernel "$LAB_KERNEL" \
			-initrd "$LAB_INITRD" -m 128 -smp 1 -append "$CMDLINE" -no-reboot $QEMU_ARGS >"$out"
		;;
	esac
	init=$(awk '$1 == "BW" && $2 == "marker" && $3 == 0 { print $4 }' "$out")
	ex=$(awk '$1 == "BW" && $2 == "exit" { print $3 }' "$out")
	st=$(awk '$1 == "BW" && $2 == "exit" { $1 = $2 = $3 = ""; gsub(/ /, ""); print }' "$out")
	cpu=$(awk '$1 == "BW" && $2 == "cpu" { print $3 + $4 }' "$out")
	bt=$(sed -n 's/.*Guest-boot-time = *\([0-9]*\) us.*/\1/p' "$log" | head -1)
	# guest uptime (s) at the uptime line, and when that line arrived (us)
	up=$(tr -d '\r' <"$log" | sed -n 's/.*KITE-GUEST: uptime \([0-9.]*\).*/\1/p' | head -1)
	upat=$(awk '$1 == "BW" && $2 == "marker" && $3 == 1 { print $4 }' "$out")
	pre=-
	if [ -n "$up" ] && [ -n "$upat" ]; then
		pre=$(awk -v a="$upat" -v u="$up" 'BEGIN { printf "%.0f", a - u * 1e6 }')
	fi
	echo "BENCHRES $vmm $i ${init:--} ${ex:--} ${bt:--} ${cpu:--} ${st:--} $pre"
	if [ -z "$init" ] || [ "$st" != 0 ]; then
		tail -15 "$log" | sed "s/^/BENCHLOG $vmm $i: /"
	fi
}

i=1
while [ "$i" -le "$BOOTS" ]; do
	if [ $((i % 2)) = 1 ]; then order="kite qemu"; else order="qemu kite"; fi
	for vmm in $order; do
		run_one "$vmm" "$i"
	done
	i=$((i + 1))
done
EOF

say "one lab run: $boots boots each of kite and QEMU (lab timeout ${timeout_s} s)"
set +e
"$lab" --kite "$KITE" --with-qemu --extra "$BB/bootwatch" --inner "$tmp/inner.cpio.gz" --timeout "$timeout_s" \
	--log "$serial" --script "$tmp/inner.sh" >"$tmp/lab.out" 2>&1
rc=$?
set -e
tr -d '\r' <"$serial" >"$tmp/serial"
grep -a '^BENCHLOG' "$tmp/serial" >&2 || true
if [ "$rc" != 0 ]; then
	tail -30 "$tmp/lab.out" >&2
	die "the lab run failed (run-lab.sh exit $rc)"
fi
# BENCHRES VMM I INIT_US EXIT_US BOOTTIMER_US CPU_US STATUS PREKERNEL_US
grep -a -o 'BENCHRES [a-z]* [0-9]* [0-9-]* [0-9-]* [0-9-]* [0-9-]* [^ ]* [0-9-]*' "$tmp/serial" >"$tmp/res" || true
[ -s "$tmp/res" ] || die "the lab printed no results (see --log)"

# med VMM FIELD: median of field FIELD (4 to-init, 5 to-exit, 6 boot timer, 7 CPU,
# 9 pre-kernel) over its good runs
med() { awk -v v="$1" -v f="$2" '$2 == v && $8 == "0" && $4 != "-" && $f != "-" { print $f }' "$tmp/res" | median; }
okruns() { awk -v v="$1" '$2 == v && $8 == "0" && $4 != "-"' "$tmp/res" | wc -l; }
k_init=$(med kite 4) k_exit=$(med kite 5) k_bt=$(med kite 6) k_cpu=$(med kite 7) k_pre=$(med kite 9)
q_init=$(med qemu 4) q_exit=$(med qemu 5) q_cpu=$(med qemu 7) q_pre=$(med qemu 9)
kver=$(sed -n 's/^BENCHINFO kernel \([^ ]*\).*/\1/p' "$tmp/serial" | head -1)

echo
echo "== lab boot: Debian cloud kernel ${kver:-?} + busybox initramfs, 1 vCPU, 128 MiB"
echo "   median of $boots alternating boots each, one nested-SVM lab run (outer VM: QEMU TCG)"
echo "   $(date -u '+%Y-%m-%d %H:%M UTC'), host: $(machine_desc)"
printf '%-10s %10s %10s %8s %12s %13s %8s\n' VMM "to-init s" "to-exit s" "CPU s" "pre-kernel s" "boot-timer s" "ok runs"
printf '%-10s %10s %10s %8s %12s %13s %8s\n' kite "$(fmt_s "$k_init")" "$(fmt_s "$k_exit")" "$(fmt_s "$k_cpu")" "$(fmt_s "$k_pre")" "$(fmt_s "$k_bt")" "$(okruns kite)/$boots"
printf '%-10s %10s %10s %8s %12s %13s %8s\n' QEMU "$(fmt_s "$q_init")" "$(fmt_s "$q_exit")" "$(fmt_s "$q_cpu")" "$(fmt_s "$q_pre")" "-" "$(okruns qemu)/$boots"
printf '%-10s %10s %10s %8s %12s\n' kite/QEMU "$(ratio "$k_init" "$q_init")" "$(ratio "$k_exit" "$q_exit")" "$(ratio "$k_cpu" "$q_cpu")" "$(ratio "$k_pre" "$q_pre")"
echo "   goal: kite <= 0.8x QEMU${qemu_args:+ (QEMU extra args: $qemu_args)}"
echo "   pre-kernel: VMM start, firmware, decompression, before the guest kernel's clock runs"
echo "   runs (s: to-init to-exit boot-timer CPU pre-kernel status):"
awk 'function s(v) { return v == "-" ? "-" : sprintf("%.2f", v / 1e6) }
	{ printf "     %-4s #%s  %s %s %s %s %s  %s\n", $2, $3, s($4), s($5), s($6), s($7), s($9), $8 }' "$tmp/res"

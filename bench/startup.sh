#!/usr/bin/env bash
# Usage: bench/startup.sh [-n RUNS] [--strace-runs S] [--mem-runs M]
#
# Start-up cost and memory of kite against QEMU microvm on this host's /dev/kvm
# (no lab). Both VMMs boot the same tiny guests (bench/guests/*.S: 32-bit PVH
# ELF images, the only ELF kind QEMU microvm's -kernel boots), 1 vCPU, 128 MiB:
#
#   exit.elf  its first act is the 4-byte OUT of a UCALL_DONE struct's address to
#             port 0xf4: kite --test-device exits 0, QEMU's isa-debug-exit exits.
#             RUNS alternating runs of each (default 20), timed by build/bench/bootwatch
#             from just before the spawn to the VMM's exit, with the VMM's CPU time.
#             kite's exec -> first KVM_RUN and its start-up steps come from its --level
#             debug lines (its clock starts in main()); bootwatch also notes when the
#             first-KVM_RUN line reached it (from the spawn: an upper bound).
#   (strace)  S runs each (default 5; 0 skips) under `strace -f --seccomp-bpf -e
#             trace=execve,ioctl`: execve -> first KVM_RUN for both VMMs, strace overhead
#             included (the only way to see QEMU's first KVM_RUN).
#   idle.elf  prints "bench-idle: running" on COM1 and halts forever. M runs each
#             (default 3): 100 ms after the line appears, /proc/PID/status and smaps are
#             read and the VMM is killed. "own" = VmRSS minus the resident part of the
#             guest-RAM mapping(s) (mappings of >= 128 MiB).
#
# kite:  KITE run --kernel G --mem 128 --cpus 1 [--test-device --level debug --serial none]
# QEMU:  qemu-system-x86_64 -M microvm -accel kvm -nodefaults -no-user-config -display none
#        -m 128 -smp 1 -kernel G [-device isa-debug-exit,iobase=0xf4,iosize=4 | -serial stdio]
# Environment: KITE (binary to test; default: `make` and build/kite), QEMU.
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

runs=20
strace_runs=5
mem_runs=3
while [ $# -gt 0 ]; do
	case $1 in
	-n) runs=${2:?-n needs a number}; shift 2 ;;
	--strace-runs) strace_runs=${2:?--strace-runs needs a number}; shift 2 ;;
	--mem-runs) mem_runs=${2:?--mem-runs needs a number}; shift 2 ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) die "unknown argument: $1 (see --help)" ;;
	esac
done

need_kvm
build
need_cmd nm "apt-get install binutils"
with_qemu=1
if ! have "$QEMU"; then
	say "$QEMU not found (apt-get install qemu-system-x86): QEMU rows skipped"
	with_qemu=0
fi
with_strace=1
if [ "$strace_runs" = 0 ]; then
	with_strace=0
elif ! have strace; then
	say "strace not found (apt-get install strace): first-KVM_RUN-under-strace rows skipped"
	with_strace=0
fi

G=$BB/guests
tmp=$(mktemp -d "${TMPDIR:-/tmp}/kite-startup.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# QEMU's isa-debug-exit exits with (value << 1) | 1: the ucall struct's address.
uc=$(nm "$G/exit.elf" | awk '$3 == "uc_done" { print $1 }')
[ -n "$uc" ] || die "no uc_done symbol in $G/exit.elf"
qemu_ok=$(((((16#$uc) << 1) | 1) & 255))

kite_exit_cmd=("$KITE" run --kernel "$G/exit.elf" --mem 128 --cpus 1 --test-device --level debug --serial none)
qemu_base=("$QEMU" -M microvm -accel kvm -nodefaults -no-user-config -display none -m 128 -smp 1)
# shellcheck disable=SC2054 # the commas are QEMU's
qemu_exit_cmd=("${qemu_base[@]}" -kernel "$G/exit.elf" -device isa-debug-exit,iobase=0xf4,iosize=4)

# check_status WHAT OUT LOG EXPECTED
check_status() {
	local st
	st=$(bw_field "$2" status)
	if [ "$st" != "$4" ]; then
		echo "--- $1 output:" >&2
		tail -20 "$3" >&2 || true
		die "$1 ended with status '$st', expected $4"
	fi
}

say "exec -> exit: $runs alternating runs each"
empty "$tmp/kite.line" "$tmp/kite.exit" "$tmp/kite.krun" "$tmp/kite.steps" "$tmp/qemu.exit" "$tmp/kite.cpu" "$tmp/qemu.cpu"
for i in $(seq 1 "$runs"); do
	order="kite qemu"
	if [ $((i % 2)) = 0 ]; then order="qemu kite"; fi
	for vmm in $order; do
		out=$tmp/$vmm.$i.bw log=$tmp/$vmm.$i.log
		case $vmm in
		kite)
			"$BB/bootwatch" -t 60 -o "$log" -m "first KVM_RUN" -- "${kite_exit_cmd[@]}" >"$out"
			check_status kite "$out" "$log" 0
			bw_field "$out" marker0 >>"$tmp/kite.line"
			bw_field "$out" exit >>"$tmp/kite.exit"
			bw_field "$out" cpu >>"$tmp/kite.cpu"
			sed -n 's/.*vCPU 0: first KVM_RUN \([0-9]*\) us.*/\1/p' "$log" >>"$tmp/kite.krun"
			sed -n 's/^kite: debug: \(.*\) at \([0-9]*\) us$/\1\t\2/p' "$log" >>"$tmp/kite.steps"
			;;
		qemu)
			[ "$with_qemu" = 1 ] || continue
			"$BB/bootwatch" -t 60 -o "$log" -- "${qemu_exit_cmd[@]}" >"$out"
			check_status QEMU "$out" "$log" "$qemu_ok"
			bw_field "$out" exit >>"$tmp/qemu.exit"
			bw_field "$out" cpu >>"$tmp/qemu.cpu"
			;;
		esac
	done
done

# strace_first_run OUTFILE CMD...: us from execve to the first KVM_RUN.
strace_first_run() {
	local f=$1
	shift
	strace -f -ttt --seccomp-bpf -e trace=execve,ioctl -o "$f" "$@" >/dev/null 2>&1 || true
	awk '/execve\(/ && !t0 { t0 = $2 } /KVM_RUN/ { printf "%.0f\n", ($2 - t0) * 1e6; exit }' "$f"
}
if [ "$with_strace" = 1 ]; then
	say "exec -> first KVM_RUN under strace: $strace_runs runs each"
	empty "$tmp/kite.strace" "$tmp/qemu.strace"
	for i in $(seq 1 "$strace_runs"); do
		strace_first_run "$tmp/st" "${kite_exit_cmd[@]}" >>"$tmp/kite.strace"
		if [ "$with_qemu" = 1 ]; then
			strace_first_run "$tmp/st" "${qemu_exit_cmd[@]}" >>"$tmp/qemu.strace"
		fi
	done
fi

say "memory with an idle guest: $mem_runs runs each"
empty "$tmp/kite.rss" "$tmp/qemu.rss"
for i in $(seq 1 "$mem_runs"); do
	"$BB/bootwatch" -t 60 -o "$tmp/idle.log" -r "bench-idle: running" -g 128 -- \
		"$KITE" run --kernel "$G/idle.elf" --mem 128 --cpus 1 >"$tmp/out"
	grep '^BW rss' "$tmp/out" >>"$tmp/kite.rss" || { tail "$tmp/idle.log" >&2; die "kite: the idle guest never said it runs"; }
	if [ "$with_qemu" = 1 ]; then
		"$BB/bootwatch" -t 60 -o "$tmp/idle.log" -r "bench-idle: running" -g 128 -- \
			"${qemu_base[@]}" -kernel "$G/idle.elf" -serial stdio >"$tmp/out"
		grep '^BW rss' "$tmp/out" >>"$tmp/qemu.rss" || { tail "$tmp/idle.log" >&2; die "QEMU: the idle guest never said it runs"; }
	fi
done
# rss_med FILE KEY: median of KEY=V (kB) over the runs, in MiB.
rss_med() {
	[ -s "$1" ] || { echo "-"; return; }
	tr ' ' '\n' <"$1" | sed -n "s/^$2=//p" | median | awk '{ if ($1 == "-") print "-"; else printf "%.2f", $1 / 1024 }'
}

# ---- tables ---------------------------------------------------------------------
k_exit=$(median <"$tmp/kite.exit")
k_krun=$(median <"$tmp/kite.krun")
k_line=$(median <"$tmp/kite.line")
q_exit=$( [ "$with_qemu" = 1 ] && median <"$tmp/qemu.exit" || echo -)
k_cpu=$(median <"$tmp/kite.cpu")
q_cpu=$( [ "$with_qemu" = 1 ] && median <"$tmp/qemu.cpu" || echo -)
k_st=- q_st=-
if [ "$with_strace" = 1 ]; then
	k_st=$(median <"$tmp/kite.strace")
	q_st=$( [ "$with_qemu" = 1 ] && median <"$tmp/qemu.strace" || echo -)
fi

echo
echo "== startup: exec -> first KVM_RUN and exec -> exit (median of $runs; strace: median of $strace_runs)"
echo "   $(date -u '+%Y-%m-%d %H:%M UTC'), $(machine_desc)"
printf '%-6s %14s %14s %15s %12s %10s\n' "" "first KVM_RUN" "first KVM_RUN" "first KVM_RUN" "exec->exit" "CPU time"
printf '%-6s %14s %14s %15s %12s %10s\n' VMM "(debug) ms" "(line) ms" "(strace) ms" "ms" "ms"
printf '%-6s %14s %14s %15s %12s %10s\n' kite "$(fmt_ms "$k_krun")" "$(fmt_ms "$k_line")" "$(fmt_ms "$k_st")" "$(fmt_ms "$k_exit")" "$(fmt_ms "$k_cpu")"
printf '%-6s %14s %14s %15s %12s %10s\n' QEMU "-" "-" "$(fmt_ms "$q_st")" "$(fmt_ms "$q_exit")" "$(fmt_ms "$q_cpu")"
printf '%-6s %14s %14s %15s %12s %10s\n' kite/Q "" "" "$(ratio "$k_st" "$q_st")" "$(ratio "$k_exit" "$q_exit")" "$(ratio "$k_cpu" "$q_cpu")"
echo "   goal: kite first KVM_RUN < 2 ms. debug: kite's own figure, from its main(); line: when"
echo "   bootwatch read that debug line, from the spawn (exec and dynamic linking included);"
echo "   strace: execve -> first KVM_RUN under strace. CPU time: user + system, all threads."
echo
echo "== kite start-up steps (median us since main(), --level debug)"
awk -F'\t' '{ print $1 }' "$tmp/kite.steps" | awk '!seen[$0]++' | while IFS= read -r step; do
	printf '   %-28s %8s\n' "$step" "$(awk -F'\t' -v s="$step" '$1 == s { print $2 }' "$tmp/kite.steps" | median)"
done
printf '   %-28s %8s\n' "first KVM_RUN" "$k_krun"
printf '   %-28s %8s\n' "exit (bootwatch, from spawn)" "$k_exit"
echo
echo "== memory: idle guest, 1 vCPU, 128 MiB (median of $mem_runs, MiB)"
printf '%-6s %8s %8s %8s %9s %11s %8s\n' VMM VmRSS RssAnon RssFile "guest RAM" "VMM own" Threads
for vmm in kite qemu; do
	f=$tmp/$vmm.rss
	name=$vmm
	[ "$vmm" = qemu ] && name=QEMU
	printf '%-6s %8s %8s %8s %9s %11s %8s\n' "$name" "$(rss_med "$f" VmRSS)" "$(rss_med "$f" RssAnon)" \
		"$(rss_med "$f" RssFile)" "$(rss_med "$f" guest)" "$(rss_med "$f" own)" \
		"$( [ -s "$f" ] && tr ' ' '\n' <"$f" | sed -n 's/^Threads=//p' | median || echo -)"
done
echo "   goal: kite VmRSS < 3 MiB"

#!/usr/bin/env bash
# Usage: bench/exitcost.sh [-n EXITS] [-r REPS] [--bare-irqchip]
#
# The cost of one port-I/O exit to userspace, bare KVM against kite, on this
# host's /dev/kvm. Both run the same guest loop (out %al,$0x80; dec %ecx; jnz) in
# 32-bit protected mode, to a port no device claims:
#   bare  build/bench/exitcost (bench/exitcost.c): a minimal KVM program that only
#         counts the exits; times N exits and 0 exits around its KVM_RUN loop.
#         --bare-irqchip gives its VM the in-kernel irqchip and PIT kite uses (-i).
#   kite  KITE run --kernel build/bench/guests/outloop.elf --test-device --serial none
#         --cmdline N: N unclaimed OUTs (kite's bus counts and drops them), then the
#         ucall DONE. Wall time (bootwatch, spawn -> exit) with N and with 0 exits;
#         the difference over N is the cost of one exit, kite's fixed start/stop cost
#         cancelled out.
# Both are measured in wall time and in CPU time (user + system of the VMM process;
# bootwatch takes kite's from wait4). CPU time is the steadier figure when other
# work shares the host: contention delays a run but does not add to its CPU time.
# REPS repetitions (default 10) interleave bare, kite N=0 and kite N runs (which of
# bare and kite goes first alternates). Per repetition kite's cost of one exit is
# (T(N) - T(0)) / N. The table shows, for wall and CPU time, the median and the
# minimum over the repetitions and kite's overhead: the median of the per-repetition
# ratios kite/bare, and min(kite)/min(bare). On a shared or virtual host the exit
# cost itself drifts (here it jumps between two levels, about 5.3 and 7.3 us, for
# bare KVM as much as for kite), so look at the minimum and the spread too.
# EXITS defaults to 200000 (about 2-5 s per run here).
# Environment: KITE (binary to test; default: `make` and build/kite).
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

n=200000
reps=10
bare_flags=()
while [ $# -gt 0 ]; do
	case $1 in
	-n) n=${2:?-n needs a number}; shift 2 ;;
	-r) reps=${2:?-r needs a number}; shift 2 ;;
	--bare-irqchip) bare_flags=(-i); shift ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) die "unknown argument: $1 (see --help)" ;;
	esac
done
if [ "$n" -le 0 ] || [ "$reps" -le 0 ]; then die "EXITS and REPS must be positive"; fi

need_kvm
build
tmp=$(mktemp -d "${TMPDIR:-/tmp}/kite-exitcost.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

kite_run() { # kite_run N: prints "WALL_US CPU_US"
	local out=$tmp/bw
	"$BB/bootwatch" -t 600 -o "$tmp/log" -- "$KITE" run --kernel "$BB/guests/outloop.elf" \
		--mem 128 --cpus 1 --test-device --serial none --cmdline "bench.exits=$1" >"$out"
	local st
	st=$(bw_field "$out" status)
	[ "$st" = 0 ] || { tail "$tmp/log" >&2; die "kite ended with status '$st' (N=$1)"; }
	echo "$(bw_field "$out" exit) $(bw_field "$out" cpu)"
}

bare_run() {
	"$BB/exitcost" ${bare_flags[@]+"${bare_flags[@]}"} -n "$n" -r 1 >"$tmp/bare.out" || die "bare KVM exit loop failed"
	awk '$2 == "median_us_per_exit" { w = $3 } $2 == "median_cpu_us_per_exit" { c = $3 }
		END { print w, c }' "$tmp/bare.out" >>"$tmp/bare"
}

say "$reps repetitions of: bare ($n exits), kite 0 exits, kite $n exits"
empty "$tmp/bare" "$tmp/k0" "$tmp/kn"
for i in $(seq 1 "$reps"); do
	# alternate which of bare and kite goes first; kite's T(0) and T(N) stay adjacent
	if [ $((i % 2)) = 1 ]; then
		bare_run
		kite_run 0 >>"$tmp/k0"
		kite_run "$n" >>"$tmp/kn"
	else
		kite_run 0 >>"$tmp/k0"
		kite_run "$n" >>"$tmp/kn"
		bare_run
	fi
	say "rep $i: bare $(tail -1 "$tmp/bare") us/exit (wall cpu), kite T(0) $(tail -1 "$tmp/k0") us, T($n) $(tail -1 "$tmp/kn") us"
done

# col FILE K: column K of FILE
col() { awk -v k="$2" '{ print $k }' "$1"; }
# per-rep cost per exit, K = 1 wall, 2 CPU: "bare kite" lines
paste "$tmp/bare" "$tmp/k0" "$tmp/kn" | awk -v n="$n" '{ printf "%s %.4f %s %.4f\n", $1, ($5 - $3) / n, $2, ($6 - $4) / n }' >"$tmp/per"
# stat K FN: FN = median or min of column K of the per-rep table
stat() {
	if [ "$2" = min ]; then col "$tmp/per" "$1" | sort -g | head -1 | awk '{ printf "%.3f", $1 }'
	else col "$tmp/per" "$1" | median | awk '{ printf "%.3f", $1 }'; fi
}
ratio_med() { awk -v b="$1" -v k="$2" '{ print $k / $b }' "$tmp/per" | median | awk '{ printf "%+.1f%%", ($1 - 1) * 100 }'; }
pct() { awk -v k="$1" -v b="$2" 'BEGIN { printf "%+.1f%%", (k / b - 1) * 100 }'; }
spread() { col "$tmp/per" "$1" | awk '{ printf "%s%.2f", sep, $1; sep = " " }'; }

echo
echo "== exit cost: one port-I/O exit to userspace, us per exit ($n exits, $reps repetitions)"
echo "   $(date -u '+%Y-%m-%d %H:%M UTC'), $(machine_desc), load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-10s %8s %8s %9s   %8s %8s %9s\n' "" "bare" "kite" "overhead" "bare" "kite" "overhead"
printf '%-10s %8s %8s %9s   %8s %8s %9s\n' "" "median" "median" "(median)" "min" "min" "(min)"
for k in wall cpu; do
	b=1 kk=2 name="wall time"
	[ "$k" = cpu ] && b=3 kk=4 name="CPU time"
	bmin=$(stat $b min) kmin=$(stat $kk min)
	printf '%-10s %8s %8s %9s   %8s %8s %9s\n' "$name" "$(stat $b median)" "$(stat $kk median)" \
		"$(ratio_med $b $kk)" "$bmin" "$kmin" "$(pct "$kmin" "$bmin")"
done
echo "   goal: kite within 5% of bare${bare_flags[0]:+ (bare with the in-kernel irqchip and PIT)}"
echo "   per repetition, CPU time: bare $(spread 3)"
echo "                             kite $(spread 4)"
echo "   kite fixed cost (0 exits, spawn -> exit): $(fmt_ms "$(col "$tmp/k0" 1 | median)") ms wall, $(fmt_ms "$(col "$tmp/k0" 2 | median)") ms CPU"

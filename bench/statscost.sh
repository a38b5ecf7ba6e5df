#!/usr/bin/env bash
# Usage: bench/statscost.sh [-n EXITS] [-r REPS] [-N REQUESTS] [--seccomp]
#
# What trap accounting costs, on this host's /dev/kvm:
#   exit cost  kite with accounting (the default) against kite --no-exit-stats on
#              the same guest loop as bench/exitcost.sh (N unclaimed port writes,
#              then DONE): per repetition, (T(N) - T(0)) / N for each, wall and CPU
#              time (bootwatch), on/off alternating which goes first. Off keeps the
#              counters but drops the two clock reads per exit and the per-device
#              timing. Goal (issue 6): under 2% difference.
#   GET /stats latency  a running idle guest (1 vCPU), build/bench/apiclient lat -g
#              /stats: REQUESTS (default 2000) timed requests on one keep-alive
#              connection after 50 untimed; GET / alongside for scale.
# --seccomp compares the seccomp filter instead: kite (filter on, the default)
# against kite --no-seccomp, same guest loop. Goal (issue 7): under 1%.
# EXITS defaults to 200000, REPS to 8.
# Environment: KITE (binary to test; default: `make` and build/kite).
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

n=200000
reps=8
reqs=2000
off_flag=--no-exit-stats
what="trap accounting"
goal=2
while [ $# -gt 0 ]; do
	case $1 in
	--seccomp) off_flag=--no-seccomp what="the seccomp filter" goal=1; shift ;;
	-n) n=${2:?-n needs a number}; shift 2 ;;
	-r) reps=${2:?-r needs a number}; shift 2 ;;
	-N) reqs=${2:?-N needs a number}; shift 2 ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) die "unknown argument: $1 (see --help)" ;;
	esac
done
if [ "$n" -le 0 ] || [ "$reps" -le 0 ] || [ "$reqs" -le 0 ]; then die "EXITS, REPS and REQUESTS must be positive"; fi

need_kvm
build
make -s -C "$REPO" guests
tmp=$(mktemp -d "${TMPDIR:-/tmp}/kite-statscost.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

kite_run() { # kite_run N [ARGS]: prints "WALL_US CPU_US"
	local nn=$1
	shift
	"$BB/bootwatch" -t 600 -o "$tmp/log" -- "$KITE" run --kernel "$BB/guests/outloop.elf" \
		--mem 128 --cpus 1 --test-device --serial none --cmdline "bench.exits=$nn" "$@" >"$tmp/bw"
	local st
	st=$(bw_field "$tmp/bw" status)
	[ "$st" = 0 ] || { tail "$tmp/log" >&2; die "kite ended with status '$st' (N=$nn $*)"; }
	echo "$(bw_field "$tmp/bw" exit) $(bw_field "$tmp/bw" cpu)"
}

say "$reps repetitions of: kite 0 and $n exits, with $what (on) and $off_flag (off)"
empty "$tmp/on0" "$tmp/onN" "$tmp/off0" "$tmp/offN"
for i in $(seq 1 "$reps"); do
	if [ $((i % 2)) = 1 ]; then
		kite_run 0 >>"$tmp/on0"; kite_run "$n" >>"$tmp/onN"
		kite_run 0 "$off_flag" >>"$tmp/off0"; kite_run "$n" "$off_flag" >>"$tmp/offN"
	else
		kite_run 0 "$off_flag" >>"$tmp/off0"; kite_run "$n" "$off_flag" >>"$tmp/offN"
		kite_run 0 >>"$tmp/on0"; kite_run "$n" >>"$tmp/onN"
	fi
	say "rep $i: on T(0) $(tail -1 "$tmp/on0") T(N) $(tail -1 "$tmp/onN"), off T(0) $(tail -1 "$tmp/off0") T(N) $(tail -1 "$tmp/offN") (wall cpu, us)"
done
# per rep: on_wall on_cpu off_wall off_cpu, us per exit
paste "$tmp/on0" "$tmp/onN" "$tmp/off0" "$tmp/offN" |
	awk -v n="$n" '{ printf "%.4f %.4f %.4f %.4f\n", ($3-$1)/n, ($4-$2)/n, ($7-$5)/n, ($8-$6)/n }' >"$tmp/per"
col() { awk -v k="$1" '{ print $k }' "$tmp/per"; }
med() { col "$1" | median | awk '{ printf "%.3f", $1 }'; }
mn() { col "$1" | sort -g | head -1 | awk '{ printf "%.3f", $1 }'; }
ratio_med() { awk -v a="$1" -v b="$2" '{ print $a / $b }' "$tmp/per" | median | awk '{ printf "%+.1f%%", ($1 - 1) * 100 }'; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%+.1f%%", (a / b - 1) * 100 }'; }

show_cost() {
	echo
	echo "== cost of $what: one port-I/O exit to userspace, us per exit ($n exits, $reps repetitions; off = $off_flag)"
	echo "   $(date -u '+%Y-%m-%d %H:%M UTC'), $(machine_desc), load $(cut -d' ' -f1-3 /proc/loadavg)"
	printf '%-10s %8s %8s %10s   %8s %8s %10s\n' "" "off" "on" "on vs off" "off" "on" "on vs off"
	printf '%-10s %8s %8s %10s   %8s %8s %10s\n' "" "median" "median" "(median)" "min" "min" "(min)"
	printf '%-10s %8s %8s %10s   %8s %8s %10s\n' "wall time" "$(med 3)" "$(med 1)" "$(ratio_med 1 3)" "$(mn 3)" "$(mn 1)" "$(pct "$(mn 1)" "$(mn 3)")"
	printf '%-10s %8s %8s %10s   %8s %8s %10s\n' "CPU time" "$(med 4)" "$(med 2)" "$(ratio_med 2 4)" "$(mn 4)" "$(mn 2)" "$(pct "$(mn 2)" "$(mn 4)")"
	echo "   goal: on within $goal% of off"
}

[ "$off_flag" = --no-exit-stats ] || { show_cost; exit 0; }
# GET /stats latency on a running idle guest
sock=$tmp/api.sock
"$KITE" --api-sock "$sock" >"$tmp/vm.out" 2>&1 &
vm=$!
"$BB/apiclient" lat -n 1 -w 0 -g / -s "$sock" >/dev/null || die "kite's API did not come up"
curl -fsS --unix-socket "$sock" -X PUT http://localhost/machine-config -d '{"vcpu_count": 1, "mem_size_mib": 64}' >/dev/null
curl -fsS --unix-socket "$sock" -X PUT http://localhost/boot-source \
	-d "{\"kernel_image_path\": \"$REPO/build/guests/idle.elf\"}" >/dev/null || die "is build/guests/idle.elf built? (make guests)"
curl -fsS --unix-socket "$sock" -X PUT http://localhost/actions -d '{"action_type": "InstanceStart"}' >/dev/null
"$BB/apiclient" lat -n "$reqs" -g /stats -s "$sock" >"$tmp/lat" || die "GET /stats failed"
"$BB/apiclient" lat -n "$reqs" -g / -s "$sock" >>"$tmp/lat" || die "GET / failed"
size=$(curl -fsS --unix-socket "$sock" http://localhost/stats | wc -c)
kill "$vm"; wait "$vm" 2>/dev/null || true

show_cost
echo
echo "== GET /stats latency, us ($reqs requests, one keep-alive connection, 1 vCPU idle guest, $size-byte answer)"
printf '%-14s %8s %8s %8s %8s\n' "" "median" "p99" "min" "max"
awk '$2 == "lat" { printf "%-14s %8s %8s %8s %8s\n", ($3 == "getpath" && !seen++) ? "GET /stats" : "GET /", $5, $6, $7, $8 }' "$tmp/lat"

#!/usr/bin/env bash
# Usage: bench/api.sh [-n RUNS] [-N REQUESTS] [-r ROUNDS] [--strace-runs S] [--kite-static]
#
# The control plane on this host, no guest and no lab: kite's Firecracker HTTP API
# on its Unix socket against QEMU microvm's QMP socket, timed from the outside by
# build/bench/apiclient (bench/apiclient.c):
#
#   kite:   KITE --api-sock SOCK
#   QEMU:   qemu-system-x86_64 -M microvm -accel kvm -nodefaults -no-user-config
#           -display none -S -qmp unix:SOCK,server,nowait
#   floor:  build/bench/apiclient serve -s SOCK: a static, single-threaded program
#           that only binds, listens and answers HTTP with fixed responses; the least
#           any control plane can cost here (exec of a process, one socket)
#   floor dyn (start-up only): build/bench/apiclient-dyn, the same program linked
#           like kite (dynamic, PIE, -z now), to show what ld.so and libc's start
#           cost before a program's own work begins
#
#   start-up  RUNS alternating runs of each (default 20): spawn, then connect() on
#             the socket path every 50 us until it succeeds ("connect", from just
#             before the spawn; the poll adds up to about 0.1 ms). At that moment the
#             VMM's CPU time: utime + stime from /proc/PID/stat (clock ticks: 10 ms
#             resolution) and the sum of /proc/PID/task/*/schedstat (ns resolution).
#             Then the first answer on that connection ("first answer": GET / for
#             kite and the floor, the QMP greeting for QEMU), SIGTERM, and the whole
#             life's CPU time from wait4 ("CPU to exit"). kite must exit 143 and
#             remove its socket; QEMU's socket file is removed by this script.
#   latency   one persistent connection each (HTTP/1.1 keep-alive), ROUNDS rounds
#             (default 3, alternating who goes first) of 50 untimed then REQUESTS
#             (default 2000) timed requests of each kind, each answer read in full
#             before the next request; median, p99 (nearest rank), min, max over all
#             rounds pooled. kite: GET / (200), PUT /machine-config {"vcpu_count": 2,
#             "mem_size_mib": 256} (204), and GET / on a new connection each time.
#             QEMU has no HTTP API: its closest equivalent is QMP query-status after
#             the qmp_capabilities handshake. floor: the same GET and PUT.
#   --kite-static  adds a start-up row for kite linked statically: the objects `make`
#             built (build/obj, one per src/*.c) linked with -static and Debian's
#             libjansson.a and libhttp_parser.a into build/bench/kite-static (not with KITE)
#   strace    S runs (default 1; 0 skips) of kite and QEMU under `strace -f -ttt`:
#             execve -> bind and -> listen of the control socket, and the syscalls
#             made before listen (strace slows every syscall: read the ratios).
# Environment: KITE (binary to test; default: `make` and build/kite), QEMU.
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

runs=20
reqs=2000
rounds=3
strace_runs=1
kite_static=0
while [ $# -gt 0 ]; do
	case $1 in
	-n) runs=${2:?-n needs a number}; shift 2 ;;
	-N) reqs=${2:?-N needs a number}; shift 2 ;;
	-r) rounds=${2:?-r needs a number}; shift 2 ;;
	--strace-runs) strace_runs=${2:?--strace-runs needs a number}; shift 2 ;;
	--kite-static) kite_static=1; shift ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) die "unknown argument: $1 (see --help)" ;;
	esac
done
if [ "$runs" -le 0 ] || [ "$reqs" -le 0 ] || [ "$rounds" -le 0 ]; then die "RUNS, REQUESTS and ROUNDS must be positive"; fi

[ "$kite_static" = 0 ] || [ -z "${KITE:-}" ] || die "--kite-static links build/obj: not with KITE=PATH"
build
AC=$BB/apiclient
if [ "$kite_static" = 1 ]; then
	mapfile -t objs < <(cd "$REPO" && find src -name '*.c' | sort | sed 's|^|build/obj/|; s|\.c$|.o|')
	(cd "$REPO" && gcc -static -Wl,-z,noexecstack -o "$BB/kite-static" "${objs[@]}" -ljansson -lhttp_parser -lpthread) ||
		die "linking build/bench/kite-static failed (needs libjansson.a and libhttp_parser.a: libjansson-dev, libhttp-parser-dev)"
fi
with_qemu=1
if ! have "$QEMU"; then
	say "$QEMU not found (apt-get install qemu-system-x86): QEMU rows skipped"
	with_qemu=0
elif [ ! -c /dev/kvm ] || [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
	say "/dev/kvm missing or not accessible: QEMU (-accel kvm) rows skipped"
	with_qemu=0
fi
with_strace=1
if [ "$strace_runs" = 0 ]; then
	with_strace=0
elif ! have strace; then
	say "strace not found (apt-get install strace): strace rows skipped"
	with_strace=0
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/kite-api.XXXXXX")
pids=()
cleanup() {
	local p
	for p in ${pids[@]+"${pids[@]}"}; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT

# cmd_for NAME SOCK: sets CMD to the command line of kite, qemu or floor on SOCK.
cmd_for() {
	case $1 in
	kite) CMD=("$KITE" --api-sock "$2") ;;
	kitestatic) CMD=("$BB/kite-static" --api-sock "$2") ;;
	qemu) CMD=("$QEMU" -M microvm -accel kvm -nodefaults -no-user-config -display none -S -qmp "unix:$2,server,nowait") ;;
	floor) CMD=("$AC" serve -s "$2") ;;
	floordyn) CMD=("$AC-dyn" serve -s "$2") ;;
	esac
}
ac_field() { awk -v w="$2" '$1 == "AC" && $2 == w { $1 = $2 = ""; sub(/^ +/, ""); print; exit }' "$1"; }

# ---- start-up -------------------------------------------------------------------
lat_vmms="kite floor"
[ "$with_qemu" = 0 ] || lat_vmms="kite qemu floor"
vmms="$lat_vmms floordyn"
[ "$kite_static" = 0 ] || vmms="$vmms kitestatic"
say "start-up: $runs alternating runs each of: $vmms"
for v in $vmms; do empty "$tmp/$v.connect" "$tmp/$v.reply" "$tmp/$v.stat" "$tmp/$v.sched" "$tmp/$v.cpu" "$tmp/$v.exit" "$tmp/$v.tries"; done
for i in $(seq 1 "$runs"); do
	order=$vmms
	if [ $((i % 2)) = 0 ]; then order=$(echo "$vmms" | tr ' ' '\n' | tac | tr '\n' ' '); fi
	for v in $order; do
		sock=$tmp/$v.$i.sock out=$tmp/$v.$i.ac log=$tmp/$v.$i.log
		q=()
		[ "$v" = qemu ] && q=(-q)
		cmd_for "$v" "$sock"
		if ! "$AC" up ${q[@]+"${q[@]}"} -o "$log" -s "$sock" -- "${CMD[@]}" >"$out"; then
			cat "$out" >&2
			tail -5 "$log" >&2 || true
			die "$v: its control socket never answered"
		fi
		st=$(ac_field "$out" exit)
		case $v in
		kite | kitestatic)
			[ "${st#* }" = 143 ] || die "kite: SIGTERM ended it with '${st#* }', expected 143"
			[ ! -e "$sock" ] || die "kite left its socket $sock behind after SIGTERM"
			;;
		*) rm -f "$sock" ;;
		esac
		ac_field "$out" connect >>"$tmp/$v.connect"
		ac_field "$out" reply >>"$tmp/$v.reply"
		ac_field "$out" tries >>"$tmp/$v.tries"
		ac_field "$out" cpu_stat >>"$tmp/$v.stat"
		ac_field "$out" cpu_sched | grep -v '^-$' >>"$tmp/$v.sched" || true
		ac_field "$out" cpu | awk '{ print $1 + $2 }' >>"$tmp/$v.cpu"
		echo "${st%% *}" >>"$tmp/$v.exit"
	done
done

# ---- latency --------------------------------------------------------------------
say "latency: $rounds rounds of $reqs requests of each kind"
# start_server NAME: runs it in the background on $tmp/NAME.lat.sock
start_server() {
	local sock=$tmp/$1.lat.sock
	cmd_for "$1" "$sock"
	"${CMD[@]}" </dev/null >"$tmp/$1.lat.log" 2>&1 &
	pids+=($!)
}
for v in $lat_vmms; do start_server "$v"; done
empty "$tmp/samples"
for i in $(seq 1 "$rounds"); do
	order=$lat_vmms
	if [ $((i % 2)) = 0 ]; then order=$(echo "$lat_vmms" | tr ' ' '\n' | tac | tr '\n' ' '); fi
	for v in $order; do
		sock=$tmp/$v.lat.sock
		case $v in
		kite) "$AC" lat -c -n "$reqs" -s "$sock" -o "$tmp/kite.samples" >/dev/null || die "kite: latency run failed" ;;
		qemu) "$AC" lat -q -n "$reqs" -s "$sock" -o "$tmp/qemu.samples" >/dev/null || die "QEMU: QMP latency run failed" ;;
		floor) "$AC" lat -n "$reqs" -s "$sock" -o "$tmp/floor.samples" >/dev/null || die "floor: latency run failed" ;;
		esac
	done
done
for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
wait 2>/dev/null || true
pids=()

# stats FILE KIND: "median p99 min max" of the samples of KIND (nearest-rank p99)
stats() {
	[ -s "$1" ] || { echo "- - - -"; return; }
	awk -v k="$2" '$1 == k { print $2 }' "$1" | sort -g | awk '{ v[n++] = $1 } END {
		if (n == 0) { print "- - - -"; exit }
		med = n % 2 ? v[(n - 1) / 2] : (v[n / 2 - 1] + v[n / 2]) / 2
		r = int((99 * n + 99) / 100)
		printf "%.1f %.1f %.1f %.1f\n", med, v[r - 1], v[0], v[n - 1] }'
}

# ---- strace ---------------------------------------------------------------------
# strace_run NAME: one run under strace -f -ttt; prints "BIND_US LISTEN_US SYSCALLS"
strace_run() {
	local v=$1 sock=$tmp/$1.st.sock tr=$tmp/$1.strace q=() sp child
	[ "$v" = qemu ] && q=(-q)
	cmd_for "$v" "$sock"
	strace -f -ttt -o "$tr" "${CMD[@]}" </dev/null >/dev/null 2>&1 &
	sp=$!
	pids+=("$sp")
	"$AC" lat ${q[@]+"${q[@]}"} -n 1 -w 0 -s "$sock" >/dev/null || die "$v under strace: no answer"
	child=$(pgrep -P "$sp" || true)
	[ -n "$child" ] && kill "$child" 2>/dev/null
	wait "$sp" 2>/dev/null || true
	pids=()
	rm -f "$sock"
	awk -v s="$sock" '
		!t0 && /execve\(/ { t0 = $2 }
		t0 && !lt && /\(/ && !/resumed>/ { n++ }
		!bt && /bind\(/ && index($0, s) { bt = $2; fd = $3; sub(/^bind\(/, "", fd); sub(/,.*/, "", fd) }
		bt && !lt && $0 ~ "listen\\(" fd "," { lt = $2 }
		END { printf "%.0f %.0f %d\n", (bt - t0) * 1e6, (lt - t0) * 1e6, n }' "$tr"
}
if [ "$with_strace" = 1 ]; then
	say "strace: $strace_runs runs each"
	for v in $vmms; do empty "$tmp/$v.st"; done
	for i in $(seq 1 "$strace_runs"); do
		for v in $vmms; do strace_run "$v" >>"$tmp/$v.st"; done
	done
fi

# ---- tables ---------------------------------------------------------------------
name() { case $1 in kite) echo kite ;; qemu) echo QEMU ;; floor) echo floor ;; floordyn) echo "floor dyn" ;; kitestatic) echo "kite stat" ;; esac; }
med_of() { if [ -s "$1" ]; then median <"$1"; else echo -; fi; }
declare -A M
for v in kite qemu floor floordyn kitestatic; do
	for f in connect reply stat sched cpu exit tries; do
		if [[ " $vmms " == *" $v "* ]]; then M[$v.$f]=$(med_of "$tmp/$v.$f"); else M[$v.$f]=-; fi
	done
done
echo
echo "== API start-up: exec -> control socket accepts a connection (median of $runs)"
echo "   $(date -u '+%Y-%m-%d %H:%M UTC'), $(machine_desc), load $(cut -d' ' -f1-3 /proc/loadavg)"
fmt='%-9s %9s %9s %12s %12s %10s %10s\n'
# shellcheck disable=SC2059
printf "$fmt" "" "connect" "first" "CPU at conn" "CPU at conn" "CPU to" "SIGTERM"
# shellcheck disable=SC2059
printf "$fmt" "" "ms" "answer ms" "stat ms" "sched ms" "exit ms" "->gone ms"
for v in kite qemu floor floordyn kitestatic; do
	[[ " $vmms " == *" $v "* ]] || continue
	# shellcheck disable=SC2059
	printf "$fmt" "$(name "$v")" "$(fmt_ms "${M[$v.connect]}")" "$(fmt_ms "${M[$v.reply]}")" "$(fmt_ms "${M[$v.stat]}")" \
		"$(fmt_ms "${M[$v.sched]}")" "$(fmt_ms "${M[$v.cpu]}")" "$(fmt_ms "${M[$v.exit]}")"
done
if [ "$with_qemu" = 1 ]; then
	# shellcheck disable=SC2059
	printf "$fmt" "kite/QEMU" "$(ratio "${M[kite.connect]}" "${M[qemu.connect]}")" "$(ratio "${M[kite.reply]}" "${M[qemu.reply]}")" "" \
		"$(ratio "${M[kite.sched]}" "${M[qemu.sched]}")" "$(ratio "${M[kite.cpu]}" "${M[qemu.cpu]}")" "$(ratio "${M[kite.exit]}" "${M[qemu.exit]}")"
fi
minimum() { if [ -s "$1" ]; then sort -g "$1" | head -1; else echo -; fi; }
echo "   goal: kite connect < 2 ms (Firecracker promises 8 CPU-ms, typically ~12 ms wall)."
line="   connect, minimum:"
for v in $vmms; do line="$line $(name "$v") $(fmt_ms "$(minimum "$tmp/$v.connect")")"; done
echo "$line ms"
echo "   connect: spawn -> first successful connect(), polled every 50 us (kite: median ${M[kite.tries]} tries;"
echo "   1 try means the poller got no CPU until kite was listening: a late, upper-bound figure)."
echo "   first answer: GET / -> 200 (QEMU: the QMP greeting). CPU at conn: stat = utime + stime"
echo "   from /proc/PID/stat, 10 ms ticks; sched = /proc/PID/task/*/schedstat, ns. CPU to exit:"
echo "   wait4 after SIGTERM. floor: build/bench/apiclient serve (static, bind + listen only);"
echo "   floor dyn: the same linked like kite (dynamic, PIE, -z now)."
[ "$kite_static" = 0 ] || echo "   kite stat: kite's objects linked -static (build/bench/kite-static)."
echo
echo "== API request latency: one persistent connection, us ($rounds rounds x $reqs requests, pooled)"
fmt='%-46s %9s %9s %9s %9s\n'
# shellcheck disable=SC2059
printf "$fmt" "request" median p99 min max
row() {
	# shellcheck disable=SC2059,SC2046
	printf "$fmt" "$1" $(stats "$2" "$3")
}
row "kite   GET / -> 200" "$tmp/kite.samples" get
row "kite   PUT /machine-config -> 204" "$tmp/kite.samples" put
row "kite   GET / on a new connection each" "$tmp/kite.samples" newconn
[ "$with_qemu" = 0 ] || row "QEMU   QMP query-status (closest equivalent)" "$tmp/qemu.samples" qmp
row "floor  GET / -> 200" "$tmp/floor.samples" get
row "floor  PUT -> 204" "$tmp/floor.samples" put
echo "   goal: kite < 100 us median. Each request is one write, its answer read in full (HTTP:"
echo "   status line + Content-Length; QMP: the line with \"return\") before the next is sent."
if [ "$with_strace" = 1 ]; then
	echo
	echo "== control socket under strace -f -ttt: execve -> bind, -> listen (median of $strace_runs, ms)"
	printf '%-9s %10s %10s %18s\n' "" "bind" "listen" "syscalls to listen"
	for v in kite qemu floor floordyn kitestatic; do
		[[ " $vmms " == *" $v "* ]] || continue
		printf '%-9s %10s %10s %18s\n' "$(name "$v")" "$(fmt_ms "$(awk '{ print $1 }' "$tmp/$v.st" | median)")" \
			"$(fmt_ms "$(awk '{ print $2 }' "$tmp/$v.st" | median)")" "$(awk '{ print $3 }' "$tmp/$v.st" | median)"
	done
	echo "   strace makes every syscall cost tens of us: the syscall count says more than the times."
fi

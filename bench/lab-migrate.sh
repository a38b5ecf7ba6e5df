#!/usr/bin/env bash
# Usage: bench/lab-migrate.sh [-n RUNS] [--timeout SECS] [--log FILE]
#
# Live migration of a Linux guest (Debian's cloud kernel, the lab's busybox
# initramfs, 1 vCPU, 256 MiB) between two VMM processes on loopback, kite and
# QEMU side by side in ONE nested-SVM lab run (tests/lab/run-lab.sh --with-qemu),
# RUNS times each (default 3), with the guest idle and with the guest dirtying
# memory (a shell loop rewriting 4 MiB of tmpfs with dd, a light dirty rate).
#
#   kite  source: kite --api-sock, boots through the API; destination: kite
#         --api-sock + PUT /migration/receive; PUT /migration/send with
#         downtime_ms 50. Downtime and total time: the source's line
#         "migration: done in T ms, paused D ms" (paused = from the pause to the
#         destination's word that the guest runs there).
#   QEMU  qemu-system-x86_64 -M microvm -accel kvm ... -qmp stdio, the destination
#         with -incoming tcp:127.0.0.1:PORT; QMP migrate with QEMU's defaults
#         (downtime-limit 300 ms); downtime and total-time from query-migrate.
#
# The guest waits in /init (kite.action=idle); "dirty" adds kite.dirty=1, which
# starts the dirtying loop first. Absolute times in the lab are TCG times; compare
# the two VMMs, not the numbers with hardware.
#
#   -n RUNS          migrations per VMM and case (default 3)
#   --timeout SECS   whole lab run (default 300 + RUNS * 4 * 120)
#   --log FILE       keep the lab's serial log
# Environment: KITE (binary to test; default: `make` and build/kite), QEMU.
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

runs=3
timeout_s=
log=
while [ $# -gt 0 ]; do
	case $1 in
	-n) runs=${2:?-n needs a number}; shift 2 ;;
	--timeout) timeout_s=${2:?--timeout needs seconds}; shift 2 ;;
	--log) log=${2:?--log needs a file}; shift 2 ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) die "unknown argument: $1 (see --help)" ;;
	esac
done
[ "$runs" -gt 0 ] || die "RUNS must be positive"
timeout_s=${timeout_s:-$((300 + runs * 4 * 120))}

lab=$REPO/tests/lab/run-lab.sh
mkinner=$REPO/tests/lab/mkinitrd-inner.sh
[ -x "$lab" ] || die "no lab runner at $lab"
need_cmd "$QEMU" "apt-get install qemu-system-x86: the lab runs in QEMU and QEMU is the peer"
need_cmd curl "apt-get install curl: the script drives kite's API with it"
build

tmp=$(mktemp -d "${TMPDIR:-/tmp}/kite-labmig.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
serial=${log:-$tmp/serial.log}

# The inner guest: with kite.dirty=1, a loop rewriting 4 MiB of tmpfs.
cat >"$tmp/dirty.sh" <<'EOF'
#!/bin/sh
case " $(cat /proc/cmdline) " in
*" kite.dirty=1 "*)
	(while :; do dd if=/dev/zero of=/tmp/dirty bs=64k count=64 2>/dev/null; done) &
	echo "KITE-GUEST: dirtying"
	;;
esac
EOF
"$mkinner" --extra-script "$tmp/dirty.sh" "$tmp/inner.cpio.gz" >/dev/null ||
	die "building the inner initramfs failed (tests/lab/mkinitrd-inner.sh)"

cat >"$tmp/inner.sh" <<EOF
RUNS=$runs
EOF
cat >>"$tmp/inner.sh" <<'EOF'
# bench/lab-migrate.sh, inside the lab
ARGS="console=ttyS0 reboot=k panic=1 quiet kite.action=idle"
dmesg -n 1 2>/dev/null
api() { curl -s -o /tmp/body -w '%{http_code}' --unix-socket "$1" -X "$2" "http://localhost$3" ${4:+-d "$4"}; }
wait_for() { # FILE PATTERN SECONDS
	local i=0; while ! grep -q "$2" "$1" 2>/dev/null; do i=$((i+1)); [ $i -gt $(($3*10)) ] && return 1; sleep 0.1; done
}
sock_up() { local i=0; while [ ! -S "$1" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; }

kite_one() { # CASE I EXTRA-ARGS
	rm -f /tmp/src.sock /tmp/dst.sock
	kite --api-sock /tmp/src.sock --level info >/tmp/ksrc 2>&1 &
	src=$!
	kite --api-sock /tmp/dst.sock --level info >/tmp/kdst 2>&1 &
	dst=$!
	sock_up /tmp/src.sock; sock_up /tmp/dst.sock
	api /tmp/src.sock PUT /boot-source "{\"kernel_image_path\":\"$LAB_KERNEL\",\"initrd_path\":\"$LAB_INITRD\",\"boot_args\":\"$ARGS $3\"}" >/dev/null
	api /tmp/src.sock PUT /machine-config '{"vcpu_count":1,"mem_size_mib":256}' >/dev/null
	api /tmp/src.sock PUT /actions '{"action_type":"InstanceStart"}' >/dev/null
	wait_for /tmp/ksrc 'KITE-GUEST: action idle' 240
	sleep 2
	api /tmp/dst.sock PUT /migration/receive '{"listen":"127.0.0.1:7100"}' >/dev/null
	api /tmp/src.sock PUT /migration/send '{"destination":"127.0.0.1:7100","downtime_ms":50}' >/dev/null
	wait $src
	line=$(grep -o 'migration: done in [0-9.]* ms, paused [0-9.]* ms (the last byte sent [0-9.]* ms' /tmp/ksrc | head -1)
	total=$(echo "$line" | awk '{ print $4 }'); down=$(echo "$line" | awk '{ print $7 }')
	sdown=$(echo "$line" | awk '{ print $13 }')
	api /tmp/dst.sock GET /migration >/dev/null
	bytes=$(sed -n 's/.*"bytes":\([0-9]*\).*/\1/p' /tmp/body)
	echo "BENCHRES kite $1 $2 ${total:--} ${down:--} ${bytes:--} ${sdown:--}"
	[ -n "$line" ] || tail -5 /tmp/ksrc | sed 's/^/BENCHLOG kite: /'
	kill -9 $dst 2>/dev/null; wait $dst 2>/dev/null
}

qmp() { # FIFO COMMAND-JSON: sends one command
	echo "$2" >&"$1"
}

qemu_one() { # CASE I EXTRA-ARGS
	rm -f /tmp/qsi /tmp/qdi; mkfifo /tmp/qsi /tmp/qdi
	Q="qemu-system-x86_64 -M microvm -accel kvm -nodefaults -no-user-config -display none -m 256 -smp 1 -kernel $LAB_KERNEL -initrd $LAB_INITRD"
	$Q -append "$ARGS $3" -serial file:/tmp/qcon -qmp stdio </tmp/qsi >/tmp/qso 2>&1 &
	src=$!
	exec 7>/tmp/qsi
	$Q -append "$ARGS $3" -serial file:/tmp/qcon2 -qmp stdio -incoming tcp:127.0.0.1:7101 </tmp/qdi >/tmp/qdo 2>&1 &
	dst=$!
	exec 8>/tmp/qdi
	echo '{"execute":"qmp_capabilities"}' >&7
	echo '{"execute":"qmp_capabilities"}' >&8
	wait_for /tmp/qcon 'KITE-GUEST: action idle' 240
	sleep 2
	echo '{"execute":"migrate","arguments":{"uri":"tcp:127.0.0.1:7101"}}' >&7
	local i=0
	while [ $i -lt 600 ]; do
		echo '{"execute":"query-migrate"}' >&7
		sleep 0.2
		grep -q '"status": "completed"' /tmp/qso && break
		grep -q '"status": "failed"' /tmp/qso && break
		i=$((i+1))
	done
	last=$(grep '"status": "completed"' /tmp/qso | tail -1)
	total=$(echo "$last" | sed -n 's/.*"total-time": \([0-9]*\).*/\1/p')
	down=$(echo "$last" | sed -n 's/.*"downtime": \([0-9]*\).*/\1/p')
	bytes=$(echo "$last" | sed -n 's/.*"transferred": \([0-9]*\).*/\1/p')
	echo "BENCHRES qemu $1 $2 ${total:--} ${down:--} ${bytes:--} -"
	[ -n "$last" ] || tail -5 /tmp/qso | sed 's/^/BENCHLOG qemu: /'
	exec 7>&- 8>&-
	kill -9 $src $dst 2>/dev/null; wait $src $dst 2>/dev/null
}

for case in idle dirty; do
	extra=; [ $case = dirty ] && extra="kite.dirty=1"
	run=1
	while [ "$run" -le "$RUNS" ]; do
		if [ $((run % 2)) = 1 ]; then kite_one $case $run "$extra"; qemu_one $case $run "$extra"
		else qemu_one $case $run "$extra"; kite_one $case $run "$extra"; fi
		run=$((run + 1))
	done
done
EOF

say "one lab run: $runs migrations each of kite and QEMU, idle and dirtying (lab timeout ${timeout_s} s)"
set +e
"$lab" --kite "$KITE" --with-qemu --bin curl --inner "$tmp/inner.cpio.gz" --timeout "$timeout_s" \
	--log "$serial" --script "$tmp/inner.sh" >"$tmp/lab.out" 2>&1
rc=$?
set -e
tr -d '\r' <"$serial" >"$tmp/serial"
grep -a '^BENCHLOG' "$tmp/serial" >&2 || true
if [ "$rc" != 0 ]; then
	tail -30 "$tmp/lab.out" >&2
	die "the lab run failed (run-lab.sh exit $rc)"
fi

echo
echo "Live migration in the lab, Linux guest 256 MiB, 1 vCPU, loopback, $runs runs each (medians)"
printf '%-6s %-6s %10s %13s %14s %9s  %s\n' VMM guest "total ms" "downtime ms" "to last byte" "MiB sent" "runs"
for case in idle dirty; do
	for vmm in kite qemu; do
		awk -v v="$vmm" -v c="$case" '$1 == "BENCHRES" && $2 == v && $3 == c && $5 != "-" {
			n++; t[n] = $5; d[n] = $6; b[n] = $7; s[n] = $8 }
			function med(a, n,   i, j, x) { for (i = 2; i <= n; i++) { x = a[i]; for (j = i - 1; j > 0 && a[j] > x; j--) a[j + 1] = a[j]; a[j + 1] = x }
				return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
			END { name = v == "kite" ? "kite" : "QEMU"
				sd = s[1] == "-" ? "-" : sprintf("%.1f", med(s, n))
				if (n) printf "%-6s %-6s %10.1f %13.1f %14s %9.1f  %d\n", name, c, med(t, n), med(d, n), sd, med(b, n) / 1048576, n
				else printf "%-6s %-6s %10s %13s %14s %9s  0 (failed)\n", name, c, "-", "-", "-", "-" }' "$tmp/serial"
	done
done
echo "kite: PUT /migration/send downtime_ms 50; downtime = pause to the destination running the guest,"
echo "      to last byte = pause to the last byte of the stream sent (the destination still to start)."
echo "QEMU: QMP migrate, default downtime-limit (300 ms); downtime and total-time from query-migrate"
echo "      (QEMU measures its downtime on the source, up to the end of its stream)."

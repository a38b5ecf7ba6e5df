#!/usr/bin/env bash
# Usage: bench/run.sh [--quick] [--no-lab]
#
# Builds kite and the bench tools, then runs every benchmark and prints all
# tables at the end:
#   bench/startup.sh    (this host's /dev/kvm) exec -> first KVM_RUN, exec -> exit,
#                       VMM memory with an idle guest: kite vs QEMU microvm
#   bench/exitcost.sh   (this host's /dev/kvm) cost of one userspace exit: bare KVM vs kite
#   build/bench/vmcost  (this host's /dev/kvm) what KVM's interrupt-controller choices
#                       cost in VM set-up and teardown (explains kite's fixed cost here)
#   bench/api.sh        (this host, no guest) control socket: exec -> accepting and
#                       request latency, kite's HTTP API vs QEMU's QMP
#   bench/statscost.sh  (this host's /dev/kvm) trap accounting on vs off per exit, GET
#                       /stats latency; and with --seccomp the seccomp filter on vs off
#   bench/lab-boot.sh   (nested-SVM lab) Debian kernel boot to init and to exit:
#                       kite vs QEMU microvm
#   bench/snapshot.py   (this host's /dev/kvm) snapshot create and restore latency, 128 MiB
#                       and 1 GiB tiny guests, kite vs QEMU (migrate to/from a file)
#   bench/lab-migrate.sh (nested-SVM lab) live migration total time and downtime, idle and
#                       dirtying Linux guest, kite vs QEMU
#   bench/lab-virtio.sh (nested-SVM lab) virtio-blk and virtio-net throughput, IOPS and
#                       exits per I/O: kite vs QEMU
#   --quick    fewer runs (startup -n 5, exitcost -n 50000 -r 3, api -n 5 -N 500 -r 1,
#              statscost -n 50000 -r 3, lab -n 1)
#   --no-lab   skip the lab benchmark
# A benchmark that cannot run (missing tool, failed build) is reported and the
# others still run; the exit status is then 1.
# Environment: KITE (binary to test; default: `make` and build/kite), QEMU.
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

quick=0
lab=1
for a in "$@"; do
	case $a in
	--quick) quick=1 ;;
	--no-lab) lab=0 ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) die "unknown argument: $a (see --help)" ;;
	esac
done

build
export KITE

tmp=$(mktemp -d "${TMPDIR:-/tmp}/kite-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
failed=()

# bench NAME SCRIPT ARGS...: runs it, keeps its tables (stdout), progress to stderr.
bench() {
	local name=$1
	shift
	say "running $name"
	if ! "$@" >"$tmp/$name.out"; then
		failed+=("$name")
		echo "== $name: FAILED (see the messages above)" >>"$tmp/$name.out"
	fi
}

vmcost_table() {
	echo
	echo "== KVM VM set-up and teardown by interrupt controller (build/bench/vmcost)"
	echo "   $(date -u '+%Y-%m-%d %H:%M UTC'), $(machine_desc)"
	"$BB/vmcost" "$@" | sed 's/^/   /'
	echo "   kite creates irqchip + PIT"
}

if [ "$quick" = 1 ]; then
	bench startup "$BENCH_DIR/startup.sh" -n 5 --strace-runs 2 --mem-runs 1
	bench exitcost "$BENCH_DIR/exitcost.sh" -n 50000 -r 3
	bench vmcost vmcost_table -r 3
	bench api "$BENCH_DIR/api.sh" -n 5 -N 500 -r 1
	bench statscost "$BENCH_DIR/statscost.sh" -n 50000 -r 3 -N 500
	bench seccompcost "$BENCH_DIR/statscost.sh" --seccomp -n 50000 -r 3
	bench snapshot "$BENCH_DIR/snapshot.py" -n 3
	[ "$lab" = 0 ] || bench lab-boot "$BENCH_DIR/lab-boot.sh" -n 1
	[ "$lab" = 0 ] || bench lab-virtio "$BENCH_DIR/lab-virtio.sh" -n 1
	[ "$lab" = 0 ] || bench lab-migrate "$BENCH_DIR/lab-migrate.sh" -n 1
else
	bench startup "$BENCH_DIR/startup.sh"
	bench exitcost "$BENCH_DIR/exitcost.sh"
	bench vmcost vmcost_table
	bench api "$BENCH_DIR/api.sh"
	bench statscost "$BENCH_DIR/statscost.sh"
	bench seccompcost "$BENCH_DIR/statscost.sh" --seccomp
	bench snapshot "$BENCH_DIR/snapshot.py"
	[ "$lab" = 0 ] || bench lab-boot "$BENCH_DIR/lab-boot.sh"
	[ "$lab" = 0 ] || bench lab-virtio "$BENCH_DIR/lab-virtio.sh"
	[ "$lab" = 0 ] || bench lab-migrate "$BENCH_DIR/lab-migrate.sh"
fi

echo "kite: $KITE ($("$KITE" --version 2>/dev/null || echo '?'), tree $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo '?'))"
for f in startup exitcost vmcost api statscost seccompcost snapshot lab-boot lab-virtio lab-migrate; do
	[ -f "$tmp/$f.out" ] && cat "$tmp/$f.out"
done
if [ ${#failed[@]} -gt 0 ]; then
	say "failed: ${failed[*]}"
	exit 1
fi

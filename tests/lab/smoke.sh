#!/bin/sh
# Lab smoke test (runs INSIDE the lab, under busybox sh):
#   tests/lab/run-lab.sh --script tests/lab/smoke.sh               # /dev/kvm + SVM
#   tests/lab/run-lab.sh --with-qemu --script tests/lab/smoke.sh   # + boot the inner
#                                                                  #   guest with QEMU microvm
# Fails unless /dev/kvm exists and the CPUs show svm; with QEMU present it
# also requires the inner guest to reach "KITE-GUEST: init-reached" and exit.
set -u
# shellcheck disable=SC3040 # busybox ash has pipefail
set -o pipefail
up() { cut -d' ' -f1 /proc/uptime; }

ls -l /dev/kvm || exit 1
n=$(grep -c svm /proc/cpuinfo)
echo "SMOKE: svm cpus $n"
[ "$n" -gt 0 ] || exit 1

if command -v qemu-system-x86_64 >/dev/null; then
	t0=$(up)
	timeout 300 qemu-system-x86_64 -M microvm -accel kvm -m 128 -nodefaults -no-user-config \
		-nographic -serial stdio -no-reboot \
		-kernel "$LAB_KERNEL" -initrd "$LAB_INITRD" \
		-append "console=ttyS0 reboot=t panic=1" </dev/null | tee /tmp/inner.log
	rc=$?
	echo "SMOKE: qemu microvm rc=$rc start=$t0 end=$(up)"
	grep -q 'KITE-GUEST: init-reached' /tmp/inner.log || exit 1
	[ "$rc" = 0 ] || exit 1
fi
echo "SMOKE: ok"

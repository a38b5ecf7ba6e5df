#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine: install dependencies, build kite, fetch
# Debian's cloud kernel and busybox, and boot a microVM that shows `uname -a` and
# /proc/cpuinfo from inside. Without hardware virtualization (no vmx/svm in
# /proc/cpuinfo) the same microVM runs inside the nested-SVM lab instead.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
make -j"$(nproc)" -s
eval "$(tests/lab/fetch.sh --quiet)"
INITRD=${KITE_CACHE:-$PWD/.cache}/lab/inner.cpio.gz
tests/lab/mkinitrd-inner.sh "$INITRD" >/dev/null
CMDLINE="console=ttyS0 reboot=k panic=1 quiet kite.action=${KITE_DEMO_ACTION:-reboot}"

if grep -qwE 'vmx|svm' /proc/cpuinfo; then
	exec build/kite run --kernel "$LAB_KERNEL" --initrd "$INITRD" --cpus 2 --mem 256 \
		--boot-timer --cmdline "$CMDLINE"
fi

echo "demo: this CPU has no vmx/svm (hardware virtualization); running the same microVM inside the nested-SVM lab (QEMU)"
script=$(mktemp)
trap 'rm -f "$script"' EXIT
cat >"$script" <<EOS
kite run --kernel "\$LAB_KERNEL" --initrd "\$LAB_INITRD" --cpus 2 --mem 256 --boot-timer --cmdline "$CMDLINE"
EOS
# Show what the microVM printed, not the outer VM's kernel log or firmware banner.
tests/lab/run-lab.sh --kite build/kite --script "$script" --timeout 600 |
	sed -u 's/\x1b\[[0-9;?]*[A-Za-z]//g; s/\x1bc//g' |
	grep --line-buffered -v -e '^\[ *[0-9.]*\] ' -e 'SeaBIOS' -e 'Booting from ROM' -e '^LAB: uptime' -e '^ *$'

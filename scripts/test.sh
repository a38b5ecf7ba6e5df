#!/usr/bin/env bash
# The test command (README, .ci/run): set-up, build with -Werror, unit tests under
# ASan+UBSan, a bounded fuzz run, tiny test guests and command-line tests on this host's /dev/kvm, then
# the nested-SVM lab booting Debian's kernel. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
make -j"$(nproc)" all guests
make -j"$(nproc)" check
# A bounded fuzz run of the virtqueue parser; its chatter goes to a file, the
# summary (or, on a crash, the last 60 lines) to the log.
mkdir -p build
if make fuzz FUZZ_TIME="${KITE_FUZZ_TIME:-30}" >build/fuzz.log 2>&1; then
	grep -E '^(Done|stat::number_of_executed_units)' build/fuzz.log || true
else
	tail -60 build/fuzz.log
	exit 1
fi
/usr/bin/python3 -m pytest -q "$@"

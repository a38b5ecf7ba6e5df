#!/usr/bin/env bash
# The test command (README, .ci/run): set-up, build with -Werror, unit tests under
# ASan+UBSan, a bounded fuzz run, tiny test guests and command-line tests on this host's /dev/kvm, then
# the nested-SVM lab booting Debian's kernel. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
make -j"$(nproc)" all guests
make -j"$(nproc)" check
make fuzz FUZZ_TIME="${KITE_FUZZ_TIME:-30}"   # bounded: the virtqueue parser under libFuzzer
/usr/bin/python3 -m pytest -q "$@"

# shellcheck shell=bash
# Helpers shared by the bench scripts (sourced, not run).

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)
# shellcheck disable=SC2034 # used by the scripts that source this
BB=$REPO/build/bench # bench tools and guests (bench/Makefile)
QEMU=${QEMU:-qemu-system-x86_64}

die() { echo "${0##*/}: $*" >&2; exit 1; }
say() { echo "${0##*/}: $*" >&2; }

# need_cmd CMD HINT: fail with a clear message when CMD is missing.
need_cmd() { command -v "$1" >/dev/null 2>&1 || die "$1 not found${2:+ ($2)}"; }
have() { command -v "$1" >/dev/null 2>&1; }

# need_kvm: /dev/kvm must be usable by this user.
need_kvm() {
	[ -c /dev/kvm ] || die "/dev/kvm missing: these benchmarks need KVM on this host"
	if [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
		die "/dev/kvm not accessible (run as root or join group kvm)"
	fi
}

# build: kite (unless KITE names a binary to use) and the bench tools and guests.
# Sets KITE to the binary to run.
build() {
	need_cmd make "apt-get install make"
	need_cmd gcc "apt-get install gcc"
	if [ -n "${KITE:-}" ]; then
		[ -x "$KITE" ] || die "KITE=$KITE is not an executable"
	else
		make -s -C "$REPO" >&2 || die "building kite failed (make); set KITE=PATH to use a prebuilt binary"
		KITE=$REPO/build/kite
	fi
	make -s -f "$BENCH_DIR/Makefile" >&2 || die "building the bench tools failed (make -f bench/Makefile)"
}

# empty FILE...: create or truncate each FILE.
empty() { local f; for f; do : >"$f"; done; }

# median: of the numbers on stdin (one per line, blank lines ignored); "-" if none.
median() {
	sort -g | awk 'NF { v[n++] = $1 } END {
		if (n == 0) { print "-"; exit }
		if (n % 2) print v[(n - 1) / 2]; else print (v[n / 2 - 1] + v[n / 2]) / 2 }'
}

# fmt_ms US: microseconds as milliseconds with 2 decimals ("-" stays "-").
fmt_ms() { awk -v v="$1" 'BEGIN { if (v == "-" || v == "") print "-"; else printf "%.2f", v / 1000 }'; }
# fmt_s US: microseconds as seconds with 2 decimals.
fmt_s() { awk -v v="$1" 'BEGIN { if (v == "-" || v == "") print "-"; else printf "%.2f", v / 1e6 }'; }
# ratio A B: A/B with 2 decimals, "-" if either is missing.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || a == "" || b == "" || b == 0) print "-"; else printf "%.2f", a / b }'; }

# bw_field FILE WHAT: from bootwatch output, "marker0" / "marker1" (us), "exit" (us),
# "status" (exit code, "timeout" or "sig N"), "cpu" (user + system us of all its threads).
bw_field() {
	awk -v w="$2" '
		$1 == "BW" && $2 == "marker" && w == "marker" $3 { print $4; exit }
		$1 == "BW" && $2 == "exit" && w == "exit" { print $3; exit }
		$1 == "BW" && $2 == "exit" && w == "status" { $1 = $2 = $3 = ""; sub(/^ +/, ""); print; exit }
		$1 == "BW" && $2 == "cpu" && w == "cpu" { print $3 + $4; exit }
	' "$1"
}

# machine_desc: one line naming this machine, for the result tables.
machine_desc() {
	local cpu
	cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
	echo "$(hostname), $(nproc) CPUs ($cpu), Linux $(uname -r), $(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
}

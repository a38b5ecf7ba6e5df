#!/usr/bin/env bash
# Installs what kite needs on Debian 12 to build, test and run its lab. Idempotent:
# with everything present it asks apt nothing. Uses sudo when not root.
set -euo pipefail

PKGS=(
	build-essential       # gcc, make
	libcmocka-dev         # unit tests
	libjansson-dev        # JSON for the API and --config-file
	libhttp-parser-dev    # HTTP/1.1 parsing for the API socket
	liburing-dev          # io_uring: virtio-blk I/O off the vCPU threads
	libseccomp-dev        # seccomp-bpf filters after set-up
	e2fsprogs             # mkfs.ext4 -d: disk images for the virtio-blk lab tests
	curl                  # a real HTTP client in the API tests
	python3-yaml          # the API conformance test reads the contract
	clang libclang-rt-14-dev  # libFuzzer for the bounded fuzz run (make fuzz)
	python3-pytest        # integration and lab tests (/usr/bin/python3)
	qemu-system-x86       # the nested-SVM lab and the benchmark peer
	busybox-static        # guest initramfs
	cpio gzip             # initramfs packing
	util-linux            # unshare, for the /dev/kvm-missing test
	gdb                   # the gdb stub tests drive the real debugger in batch mode
	iproute2              # ip: network namespaces joined by veth for the migration tests
)

missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo
echo "setup: installing ${missing[*]}" >&2
$SUDO apt-get update -q >/dev/null
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null

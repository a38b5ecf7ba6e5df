"""--net tap=NAME on this host: every TAP that cannot be had is one
`kite: error: network interface 'ID': TAP 'NAME': ...` line and exit code 1
(a runtime failure: the command line was fine, the host refused); a TAP that
can be had is created per interface with the virtio header and no packet-info
prefix, and goes away with kite.

Everything runs in a fresh network namespace (`unshare --net`), so no test
creates or touches an interface of this host; the guest's frames never leave
that namespace. The guests are kite's tiny test guests: the frames themselves
are the lab's business (tests/lab/test_lab_net.py)."""
import os
import shutil
import subprocess
import sys

import pytest

from kitetest import error_line, needs_kvm, run

pytestmark = needs_kvm


def _unshare(*flags):
    unshare = shutil.which("unshare")
    if not unshare or not os.path.exists("/dev/net/tun"):
        pytest.skip("needs unshare and /dev/net/tun")
    if subprocess.run([unshare, *flags, "true"], capture_output=True).returncode:
        pytest.skip(f"unshare {' '.join(flags)} is not permitted here")
    return [unshare, *flags]


def in_netns(cmd, *flags):
    """Runs cmd in a new network namespace (plus any other unshare flags)."""
    return run([*_unshare("--net", *flags), *cmd])


def in_netns_sh(script, *args):
    return run([*_unshare("--net"), "sh", "-c", script, "sh", *args])


def test_not_a_tap(kite, guests):
    r = in_netns([kite, "run", "--kernel", guests / "hello.elf", "--net", "tap=lo"])
    assert r.returncode == 1
    assert error_line(r) == ("kite: error: network interface 'net0': TAP 'lo': not a TAP "
                             "device, or not a valid interface name (Invalid argument)")


def test_not_permitted(kite, guests):
    # Root without CAP_NET_ADMIN may neither create a TAP nor attach to one.
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to drop CAP_NET_ADMIN")
    caps = "-net_admin"
    r = in_netns(["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}",
                  kite, "run", "--kernel", guests / "hello.elf", "--net", "tap=kt0,id=uplink"])
    assert r.returncode == 1
    assert error_line(r) == (
        "kite: error: network interface 'uplink': TAP 'kt0': not permitted (creating or "
        "attaching a TAP needs CAP_NET_ADMIN, or a persistent TAP owned by this user) "
        "(Operation not permitted)")


def test_no_tun_device(kite, guests):
    # An empty /dev/net: the tun module is not loaded, or /dev is minimal.
    script = 'mount -t tmpfs tmpfs /dev/net || exit 97; exec "$@"'
    r = run([*_unshare("--net", "--mount"), "sh", "-c", script, "sh",
             kite, "run", "--kernel", guests / "hello.elf", "--net", "tap=kt0"])
    if r.returncode == 97:
        pytest.skip(f"cannot mount over /dev/net: {r.stderr.strip()}")
    assert r.returncode == 1
    assert error_line(r) == ("kite: error: network interface 'net0': TAP 'kt0': "
                             "open /dev/net/tun: No such file or directory")


# Holds TAP kt0 (a single-queue TAP takes one file) and runs the command.
HOLD = r'''
import fcntl, os, struct, subprocess, sys
fd = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(fd, 0x400454ca, struct.pack("16sH22x", b"kt0", 0x0002 | 0x1000))  # TUNSETIFF, TAP|NO_PI
r = subprocess.run(sys.argv[1:], stdin=subprocess.DEVNULL)
sys.exit(r.returncode)
'''


def test_tap_in_use(kite, guests):
    r = in_netns([sys.executable, "-c", HOLD, kite, "run", "--kernel", guests / "hello.elf",
                  "--net", "tap=kt0"])
    assert r.returncode == 1
    assert error_line(r) == ("kite: error: network interface 'net0': TAP 'kt0': already in "
                             "use by another process (Device or resource busy)")


# kite with two interfaces and a guest that idles; once both TAPs exist, shows
# them, stops kite, and shows what is left.
TWO_TAPS = r'''
"$1" run --kernel "$2" --test-device --net tap=kt0 --net tap=kt1,mac=02:11:22:33:44:55,id=b \
	--level debug </dev/null 2>/tmp/kite-net-$$.err &
pid=$!
i=0
while ! ip link show kt1 >/dev/null 2>&1; do
	i=$((i+1)); [ $i -gt 200 ] && { echo "no kt1"; break; }
	sleep 0.1
done
ip -d -o link show kt0
ip -d -o link show kt1
kill $pid; wait $pid
echo "left: $(ip -o link | grep -c ': kt')"
cat /tmp/kite-net-$$.err; rm -f /tmp/kite-net-$$.err
'''


def test_one_tap_per_interface(kite, guests):
    if not shutil.which("ip"):
        pytest.skip("needs iproute2's ip")
    r = in_netns_sh(TWO_TAPS, kite, str(guests / "idle.elf"))
    out = r.stdout
    assert "no kt1" not in out, out + r.stderr
    for tap in ("kt0", "kt1"):
        line = next(l for l in out.splitlines() if f": {tap}:" in l)
        # IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, and not persistent
        assert "tun type tap pi off vnet_hdr on persist off" in line, line
    assert "virtio-net0: PCI" in out and "virtio-net1: PCI" in out, out
    # the TAPs were kite's own: they go with it
    assert "left: 0" in out, out

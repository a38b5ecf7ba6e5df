"""virtio-net with a real Linux guest, in the nested-SVM lab.

The outer VM makes a TAP (busybox tunctl), gives it 10.0.0.1/24 and serves a
random file over HTTP; kite boots the inner guest with that TAP as eth0 and a
second, unconfigured interface with its own MAC. The guest (10.0.0.2/24)
pings the outer VM, downloads the outer file, and serves a random file of its
own, which the outer VM pings for and downloads. Both files are compared by
SHA-256 on both ends. The outer kernel hands the TAP 64 KiB TSO frames and the
guest sends them too, so checksum and segmentation offloads and mergeable
receive buffers all carry data. The network exists only inside the lab.
"""
import os
import re
import subprocess
import sys

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SIZE = 4 * 1024 * 1024
MAC1 = "02:00:00:00:00:42"
# virtio feature bits the guest must have accepted (virtio 5.1.3): CSUM,
# GUEST_CSUM, MAC, GUEST_TSO4, GUEST_TSO6, HOST_TSO4, HOST_TSO6, MRG_RXBUF,
# STATUS, and VERSION_1.
FEATURES = {0: "CSUM", 1: "GUEST_CSUM", 5: "MAC", 7: "GUEST_TSO4", 8: "GUEST_TSO6",
            11: "HOST_TSO4", 12: "HOST_TSO6", 15: "MRG_RXBUF", 16: "STATUS", 32: "VERSION_1"}
ABSENT = {10: "GUEST_UFO", 14: "HOST_UFO", 17: "CTRL_VQ"}

# Runs in the inner guest (/lab-extra.sh) after init loaded virtio_net.
GUEST = r'''
g() { echo "KITE-GUEST: $*"; }
for i in eth0 eth1; do
	g "net $i mac=$(cat /sys/class/net/$i/address) features=$(cat /sys/class/net/$i/device/features)"
done
ip link set lo up
ip addr add 10.0.0.2/24 dev eth0
ip link set eth0 up
# operstate follows the carrier asynchronously (linkwatch): wait for it, bounded
i=0; while [ "$(cat /sys/class/net/eth0/operstate)" != up ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
g "net eth0 operstate=$(cat /sys/class/net/eth0/operstate) carrier=$(cat /sys/class/net/eth0/carrier)"
ping -c 3 -w 60 10.0.0.1 >/tmp/ping 2>&1
g "net ping-host rc=$? $(grep transmitted /tmp/ping)"
wget -q -O /tmp/down.bin http://10.0.0.1:8080/down.bin
g "net wget-host rc=$?"
g "net down-sha $(sha256sum /tmp/down.bin | cut -d' ' -f1)"
mkdir -p /tmp/www
head -c SIZE /dev/urandom >/tmp/www/up.bin
g "net up-sha $(sha256sum /tmp/www/up.bin | cut -d' ' -f1)"
httpd -p 10.0.0.2:8080 -h /tmp/www
g "net serving"
# Until the outer VM says it is done (its /done), at most about 5 minutes.
i=0
until wget -q -O /tmp/done http://10.0.0.1:8080/done 2>/dev/null; do
	i=$((i+1)); [ $i -ge 300 ] && break
	sleep 1
done
g "net done $(cat /tmp/done 2>/dev/null)"
g "net $(awk '/^Tcp:/ { if (h) print $13; h = 1 }' /proc/net/snmp) TCP segments retransmitted"
g "net rx_bytes=$(cat /sys/class/net/eth0/statistics/rx_bytes) tx_bytes=$(cat /sys/class/net/eth0/statistics/tx_bytes) rx_errors=$(cat /sys/class/net/eth0/statistics/rx_errors) rx_dropped=$(cat /sys/class/net/eth0/statistics/rx_dropped) rx_length_errors=$(cat /sys/class/net/eth0/statistics/rx_length_errors)"
'''.replace("SIZE", str(SIZE))

# Runs in the outer VM.
OUTER = r'''
echo "=== BEGIN net"
o() { echo "OUTER: $*"; }
tunctl -t tap0 >/dev/null || o "tunctl failed"
tunctl -t tap1 >/dev/null || o "tunctl failed"
ip addr add 10.0.0.1/24 dev tap0
ip link set tap0 up
mkdir -p /tmp/www
head -c SIZE /dev/urandom >/tmp/www/down.bin
o "down-sha $(sha256sum /tmp/www/down.bin | cut -d' ' -f1)"
httpd -p 10.0.0.1:8080 -h /tmp/www
(
	# The guest answers once its eth0 is up: at most about 5 minutes.
	i=0
	until ping -c 1 -W 1 10.0.0.2 >/dev/null 2>&1; do
		i=$((i+1)); [ $i -ge 300 ] && break
	done
	ping -c 3 -w 60 10.0.0.2 >/tmp/ping 2>&1
	o "ping-guest rc=$? $(grep transmitted /tmp/ping)"
	i=0
	until wget -q -O /tmp/up.bin http://10.0.0.2:8080/up.bin 2>/dev/null; do
		i=$((i+1)); [ $i -ge 300 ] && break
		sleep 1
	done
	o "wget-guest tries=$i"
	o "up-sha $(sha256sum /tmp/up.bin | cut -d' ' -f1)"
	echo bye >/tmp/www/done
) >/tmp/outer.log 2>&1 &
kite run --kernel "$LAB_KERNEL" --initrd "$LAB_INITRD" --mem 256 --level info \
	--net tap=tap0 --net tap=tap1,mac=MAC1,id=second \
	--cmdline "console=ttyS0 reboot=k panic=1 quiet"
o "kite rc=$?"
wait
cat /tmp/outer.log
o "$(awk '/^Tcp:/ { if (h) print $13; h = 1 }' /proc/net/snmp) TCP segments retransmitted"
o "tap0 $(tr '\n' ' ' </proc/net/dev | grep -o 'tap0:[^a-z]*')"
echo "=== END net"
'''.replace("SIZE", str(SIZE)).replace("MAC1", MAC1)


@pytest.fixture(scope="session")
def lab_net(tmp_path_factory):
    subprocess.run(["make", "-s", "-C", REPO, "all"], check=True)
    tmp = tmp_path_factory.mktemp("labnet")
    guest = tmp / "guest-net.sh"
    guest.write_text(GUEST)
    inner = tmp / "inner-net.cpio.gz"
    subprocess.run([os.path.join(REPO, "tests/lab/mkinitrd-inner.sh"), "--extra-script", str(guest),
                    str(inner)], check=True, stdout=subprocess.DEVNULL)
    script = tmp / "net.sh"
    script.write_text(OUTER)
    cmd = [os.path.join(REPO, "tests/lab/run-lab.sh"), "--kite", os.path.join(REPO, "build/kite"),
           "--inner", str(inner), "--script", str(script), "--timeout", "900"]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=1000)
    out = proc.stdout.decode(errors="replace").replace("\r", "")
    sys.stderr.write(out[-5000:])
    (tmp / "lab.log").write_text(out)
    assert "LAB: ready" in out, "the outer VM did not come up:\n" + out[-2000:]
    m = re.search(r"=== BEGIN net\n(.*?)=== END net", out, re.S)
    assert m, "the net scenario did not finish:\n" + out[-3000:]
    return m.group(1)


def value(text, key):
    m = re.search(r"^(?:KITE-GUEST|OUTER): " + key + r"[ =]([^\n]*)$", text, re.M)
    assert m, f"no '{key}' line in:\n{text[-3000:]}"
    return m.group(1)


def test_guest_binds_both_interfaces(lab_net):
    t = lab_net
    assert "insmod" not in t, t[-3000:]  # init loaded failover, net_failover, virtio_net
    assert value(t, "virtio").split() == ["virtio0", "virtio1"]
    eth0 = value(t, "net eth0")
    eth1 = value(t, "net eth1")
    # no mac=: a locally administered address from the interface's index
    assert "mac=06:00:ac:10:00:00" in eth0
    assert f"mac={MAC1}" in eth1


def test_features_negotiated(lab_net):
    feats = re.search(r"features=([01]+)", value(lab_net, "net eth0")).group(1)
    for bit, name in FEATURES.items():
        assert feats[bit] == "1", f"{name} (bit {bit}) not negotiated: {feats}"
    for bit, name in ABSENT.items():
        assert feats[bit] == "0", f"{name} (bit {bit}) offered: {feats}"


def test_link_up(lab_net):
    st = value(lab_net, "net eth0 operstate")
    assert st == "up carrier=1", st


def test_ping_both_ways(lab_net):
    assert value(lab_net, "net ping-host").startswith("rc=0 3 packets transmitted, 3 packets received")
    assert value(lab_net, "ping-guest").startswith("rc=0 3 packets transmitted, 3 packets received")


def test_transfer_host_to_guest(lab_net):
    assert value(lab_net, "net wget-host") == "rc=0"
    want = value(lab_net, "down-sha")
    assert re.fullmatch(r"[0-9a-f]{64}", want)
    assert value(lab_net, "net down-sha") == want


def test_transfer_guest_to_host(lab_net):
    want = value(lab_net, "net up-sha")
    assert re.fullmatch(r"[0-9a-f]{64}", want)
    assert value(lab_net, "up-sha") == want
    assert value(lab_net, "net done") == "bye"


def test_guest_counters_and_exit(lab_net):
    m = re.search(r"rx_bytes=(\d+) tx_bytes=(\d+) rx_errors=(\d+) rx_dropped=(\d+) rx_length_errors=(\d+)",
                  lab_net)
    assert m, lab_net[-2000:]
    rx, tx, errors, _, length = map(int, m.groups())
    assert rx > SIZE and tx > SIZE  # the files and the headers around them
    assert errors == 0 and length == 0
    assert value(lab_net, "kite rc") == "0"
    assert "kite: error" not in lab_net


def test_offloads_carry_big_frames(lab_net):
    # The TAP's counters in the outer VM: received = from the guest, sent =
    # to the guest. 4 MiB in 1514-byte frames would be over 2900 frames each
    # way; TSO both ways (HOST_TSO4 from the guest, GUEST_TSO4 set on the TAP
    # with TUNSETOFFLOAD) carries it in far fewer.
    f = value(lab_net, "tap0").split()
    assert f[0] == "tap0:", f
    rx_bytes, rx_packets, tx_bytes, tx_packets = int(f[1]), int(f[2]), int(f[9]), int(f[10])
    assert rx_bytes > SIZE and tx_bytes > SIZE
    assert rx_packets < SIZE // 1514 // 2, f"guest to host: {rx_packets} frames"
    assert tx_packets < SIZE // 1514 // 2, f"host to guest: {tx_packets} frames"

"""virtio-vsock with a real Linux guest, in the nested-SVM lab, both directions
of Firecracker's Unix-socket model:

- guest -> host: the guest connects to CID 2 port 5000; a host process listens
  on <uds>_5000; 1 MiB and a line go each way through the credit window, with
  the guest's half-close (SHUT_WR) reaching the host as EOF;
- host -> guest: a host process connects to the uds, sends "CONNECT 6000\\n",
  gets "OK <port>", and exchanges 1 MiB with a listener in the guest;
- a guest connection to a port nobody listens on is refused (RST);
- kite removes its socket when it exits.

The peers are tests/lab/vsock_helper.c, built static: inside the guest (inner
initramfs, --add) and in the outer VM (--extra). One lab run for the module.
"""
import os
import re
import subprocess
import sys

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BULK = 1 << 20

# In the inner guest, after its init loaded the vsock modules.
GUEST_SCRIPT = r'''
/bin/vsock_helper guest-listen 6000 &
lp=$!
/bin/vsock_helper guest-connect 5000 from-guest
/bin/vsock_helper guest-connect 5001 nobody-listens
wait $lp
echo "KITE-GUEST: vsock listener rc=$?"
'''

# In the outer VM.
LAB_SCRIPT = r'''
H=$LAB_EXTRA/vsock_helper
echo "=== BEGIN vsock"
$H host-listen /tmp/v.sock_5000 >/tmp/host-listen.log
kite run --kernel "$LAB_KERNEL" --initrd "$LAB_INITRD" --mem 256 --level info \
	--vsock cid=3,uds=/tmp/v.sock --cmdline "console=ttyS0 reboot=k panic=1 quiet" \
	>/tmp/kite.out 2>&1 &
kpid=$!
$H host-connect /tmp/v.sock 6000 from-host 300
echo "host-connect rc=$?"
# The guest reboots once both exchanges are done; bounded wait.
i=0; while kill -0 $kpid 2>/dev/null && [ $i -lt 300 ]; do sleep 1; i=$((i+1)); done
kill $kpid 2>/dev/null
wait $kpid
echo "kite rc=$?"
cat /tmp/kite.out /tmp/host-listen.log
[ -e /tmp/v.sock ] && echo "uds left behind" || echo "uds removed"
echo "=== END vsock"
'''


@pytest.fixture(scope="module")
def vsock_lab(tmp_path_factory):
    subprocess.run(["make", "-s", "-C", REPO, "all"], check=True)
    tmp = tmp_path_factory.mktemp("lab-vsock")
    helper = tmp / "vsock_helper"
    subprocess.run(["gcc", "-static", "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(helper),
                    os.path.join(REPO, "tests/lab/vsock_helper.c")], check=True)
    guest_script = tmp / "guest.sh"
    guest_script.write_text(GUEST_SCRIPT)
    inner = tmp / "inner-vsock.cpio.gz"
    subprocess.run([os.path.join(REPO, "tests/lab/mkinitrd-inner.sh"), "--extra-script",
                    str(guest_script), "--add", f"{helper}:/bin/vsock_helper", str(inner)],
                   check=True, stdout=subprocess.DEVNULL)
    script = tmp / "vsock.sh"
    script.write_text(LAB_SCRIPT)
    cmd = [os.path.join(REPO, "tests/lab/run-lab.sh"), "--kite", os.path.join(REPO, "build/kite"),
           "--inner", str(inner), "--extra", str(helper), "--script", str(script),
           "--timeout", "900", "--log", str(tmp / "lab.log")]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=1000)
    out = proc.stdout.decode(errors="replace").replace("\r", "")
    sys.stderr.write(out[-4000:])
    assert "LAB: ready" in out, "the outer VM did not come up:\n" + out[-2000:]
    m = re.search(r"=== BEGIN vsock\n(.*?)=== END vsock", out, re.S)
    assert m, "the vsock scenario did not finish:\n" + out[-3000:]
    return m.group(1)


def line(text, pattern):
    m = re.search(pattern, text, re.M)
    assert m, f"no line matching {pattern!r}"
    return m


def test_kite_and_guest_ran(vsock_lab):
    assert "kite rc=0" in vsock_lab
    assert "kite: error" not in vsock_lab
    # the guest found the device and bound the vsock transport
    assert "virtio0" in line(vsock_lab, r"^KITE-GUEST: virtio (.*)$").group(1)
    assert "insmod" not in vsock_lab
    assert "KITE-GUEST: vsock listener rc=0" in vsock_lab


def test_guest_connects_to_host_port(vsock_lab):
    # the host listener on <uds>_5000 got the guest's line and all its bytes
    assert f"HOST: served from-guest bytes={BULK} pattern=ok" in vsock_lab
    # and the guest read the host's answer, then EOF
    assert f"KITE-GUEST: vsock reply from-guest bytes={BULK} pattern=ok eof=yes" in vsock_lab


def test_guest_connect_without_listener_is_refused(vsock_lab):
    assert line(vsock_lab, r"^KITE-GUEST: vsock connect failed: (.*)$").group(1) in (
        "Connection reset by peer", "Connection refused")


def test_host_connects_to_guest_port(vsock_lab):
    port = int(line(vsock_lab, r"^HOST: handshake 'OK (\d+)' after \d+ tries$").group(1))
    assert 1 << 30 <= port < 1 << 31  # kite's local port range
    assert f"KITE-GUEST: vsock served from-host bytes={BULK} pattern=ok" in vsock_lab
    assert f"HOST: reply from-host bytes={BULK} pattern=ok eof=yes" in vsock_lab
    assert "host-connect rc=0" in vsock_lab


def test_uds_removed_at_exit(vsock_lab):
    assert "uds removed" in vsock_lab

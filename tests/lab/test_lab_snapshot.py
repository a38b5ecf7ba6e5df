"""Snapshots and live migration of a real Linux guest doing work, in the
nested-SVM lab (docs/snapshots.md, docs/migration.md).

The guest mounts an ext4 disk (virtio-blk) and, every 0.3 s, appends "N uptime"
to a log file on it, syncs, and prints "SNAP: tick N up=U"; it reports an uptime
that went back. At kite.stop=N it checks that the log holds every tick exactly
once and in order, unmounts and powers off. Meanwhile it keeps rewriting a few
MiB of tmpfs, so memory is dirtied as it goes.

One lab run:
- snap: boot through the API; at tick 5 pause, Full snapshot, copy the disk;
  resume; at tick 10 pause, Diff snapshot, copy the disk; kill -9 kite.
- restore1, restore2: the Full snapshot twice, each in a fresh kite with the disk
  as it was at the snapshot, three seconds of wall time later: the ticks carry on
  from 6, uptime never goes back nor jumps by the time in between, the log is
  whole.
- diff: the Diff folded onto a copy of the Full memory (kite snapshot-fold):
  carries on from 11.
- migrate: two kites in the outer VM, loopback: the guest finishes its work at
  the destination, the source exits 0.
- migns: the same with each kite in a network namespace of its own, joined by a
  veth pair (the outer VM gets veth.ko and iproute2's ip).
- migfail: the destination killed mid-migration: the source runs on.
"""
import os
import re
import shutil
import subprocess
import sys

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
ARGS = "console=ttyS0 reboot=k panic=1 quiet"
STOP = 25

GUEST = r'''
s() { echo "SNAP: $*"; }
stop=0
for w in $(cat /proc/cmdline); do case $w in kite.stop=*) stop=${w#kite.stop=} ;; esac; done
mkdir -p /mnt
mount -t ext4 /dev/vda /mnt
s "mount rc=$?"
(while :; do dd if=/dev/zero of=/tmp/dirty bs=64k count=32 2>/dev/null; sleep 0.2; done) &
n=0
prev=0
while :; do
	n=$((n+1))
	up=$(cut -d' ' -f1 /proc/uptime)
	echo "$n $up" >>/mnt/log
	sync
	s "tick $n up=$up"
	cur=$(echo "$up" | tr -d .)
	[ "$cur" -lt "$prev" ] && s "uptime-back $prev $cur"
	prev=$cur
	if [ "$stop" -gt 0 ] && [ "$n" -ge "$stop" ]; then
		if awk -v want="$stop" '$1 != NR { bad = 1 } END { exit bad || NR != want }' /mnt/log; then
			s "log-ok"
		else
			s "log-bad"; tail -5 /mnt/log
		fi
		umount /mnt
		s "done $n"
		poweroff -f
	fi
	sleep 0.3
done
'''

SCRIPT = r'''
api() { curl -s -o /tmp/body -w '%{http_code}' --unix-socket "$1" -X "$2" "http://localhost$3" ${4:+-d "$4"}; }
wait_for() { # FILE PATTERN SECONDS [PID]
	i=0; while ! grep -q "$2" "$1" 2>/dev/null; do
		i=$((i+1)); [ $i -gt $(($3*10)) ] && return 1
		[ -n "$4" ] && ! kill -0 "$4" 2>/dev/null && return 1
		sleep 0.1
	done
}
start_kite() { # SOCK CONSOLE -> $pid
	rm -f "$1"
	kite --api-sock "$1" --level info >"$2" 2>"$2.err" &
	pid=$!
	i=0; while [ ! -S "$1" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
}
boot_vm() { # SOCK STOP
	echo "boot-source $(api $1 PUT /boot-source "{\"kernel_image_path\":\"$LAB_KERNEL\",\"initrd_path\":\"$LAB_INITRD\",\"boot_args\":\"$BOOT_ARGS kite.stop=$2\"}")"
	echo "machine-config $(api $1 PUT /machine-config '{"vcpu_count":1,"mem_size_mib":256,"track_dirty_pages":true}')"
	echo "drive $(api $1 PUT /drives/root '{"drive_id":"root","path_on_host":"/tmp/disk.img","is_root_device":false,"is_read_only":false}')"
	echo "start $(api $1 PUT /actions '{"action_type":"InstanceStart"}')"
}
last_tick() { grep -o 'SNAP: tick [0-9]* up=[0-9.]*' "$1" | tail -1 | cut -d' ' -f3-; }
show() { # CONSOLE
	grep -aE 'SNAP:|kite:|Kernel panic|BUG' "$1" "$1.err" | sed 's/^[^:]*://'
}
restore() { # NAME STATE MEM DISK
	cp "$4" /tmp/disk.img
	start_kite /tmp/r.sock /tmp/c-$1
	t0=$(cut -d' ' -f1 /proc/uptime)
	echo "load $(api /tmp/r.sock PUT /snapshot/load "{\"snapshot_path\":\"$2\",\"mem_backend\":{\"backend_type\":\"File\",\"backend_path\":\"$3\"},\"resume_vm\":true}") $(cat /tmp/body)"
	echo "load-took $t0 $(cut -d' ' -f1 /proc/uptime)"
	if ! wait_for /tmp/c-$1 'SNAP: done' 120 $pid; then
		echo "no-done; the console's tail:"
		tail -20 /tmp/c-$1
		kill -9 $pid
	fi
	wait $pid
	echo "kite-rc $?"
	show /tmp/c-$1
}

echo "=== BEGIN snap"
cp "$LAB_EXTRA/snap/disk.img" /tmp/disk.img
start_kite /tmp/s.sock /tmp/c0
boot_vm /tmp/s.sock $STOP
wait_for /tmp/c0 'SNAP: tick 5 ' 300 $pid && echo "at-5"
echo "pause1 $(api /tmp/s.sock PATCH /vm '{"state":"Paused"}')"
echo "full $(api /tmp/s.sock PUT /snapshot/create '{"snapshot_type":"Full","snapshot_path":"/tmp/s1","mem_file_path":"/tmp/m1"}') $(cat /tmp/body)"
cp /tmp/disk.img /tmp/disk1.img
echo "full-at $(last_tick /tmp/c0)"
echo "resume1 $(api /tmp/s.sock PATCH /vm '{"state":"Resumed"}')"
wait_for /tmp/c0 'SNAP: tick 10 ' 300 $pid && echo "at-10"
echo "pause2 $(api /tmp/s.sock PATCH /vm '{"state":"Paused"}')"
echo "diff $(api /tmp/s.sock PUT /snapshot/create '{"snapshot_type":"Diff","snapshot_path":"/tmp/s2","mem_file_path":"/tmp/m2"}') $(cat /tmp/body)"
cp /tmp/disk.img /tmp/disk2.img
echo "diff-at $(last_tick /tmp/c0)"
kill -9 $pid
wait $pid
echo "m1 $(du -k /tmp/m1 | cut -f1) $(stat -c %s /tmp/m1)"
echo "m2 $(du -k /tmp/m2 | cut -f1) $(stat -c %s /tmp/m2)"
show /tmp/c0
echo "=== END snap"
sleep 3

echo "=== BEGIN restore1"
restore 1 /tmp/s1 /tmp/m1 /tmp/disk1.img
echo "=== END restore1"
echo "=== BEGIN restore2"
restore 2 /tmp/s1 /tmp/m1 /tmp/disk1.img
echo "=== END restore2"

echo "=== BEGIN diff"
cp /tmp/m1 /tmp/m12
kite snapshot-fold /tmp/m12 /tmp/m2 2>&1
echo "fold-rc $?"
restore 3 /tmp/s2 /tmp/m12 /tmp/disk2.img
echo "=== END diff"
rm -f /tmp/m1 /tmp/m2 /tmp/m12 /tmp/disk1.img /tmp/disk2.img

echo "=== BEGIN migrate"
cp "$LAB_EXTRA/snap/disk.img" /tmp/disk.img
start_kite /tmp/src.sock /tmp/csrc
src=$pid
boot_vm /tmp/src.sock $STOP
wait_for /tmp/csrc 'SNAP: tick 5 ' 300 $src && echo "at-5"
start_kite /tmp/dst.sock /tmp/cdst
dst=$pid
echo "receive $(api /tmp/dst.sock PUT /migration/receive '{"listen":"127.0.0.1:7000"}')"
echo "send $(api /tmp/src.sock PUT /migration/send '{"destination":"127.0.0.1:7000","downtime_ms":50}')"
wait $src
echo "src-rc $?"
echo "src-last $(last_tick /tmp/csrc)"
api /tmp/dst.sock GET /migration >/dev/null; echo "dst-status $(cat /tmp/body)"
wait_for /tmp/cdst 'SNAP: done' 300 $dst
wait $dst
echo "dst-rc $?"
echo "--- src"; show /tmp/csrc
echo "--- dst"; show /tmp/cdst
echo "=== END migrate"

echo "=== BEGIN migns"
# Source and destination in network namespaces of their own, joined by a veth pair.
IP=/usr/bin/ip # iproute2 (busybox's ip has no netns)
insmod "$LAB_EXTRA/snap/veth.ko" 2>&1
unshare -n sleep 100000 &
nsa=$!
unshare -n sleep 100000 &
nsb=$!
sleep 0.5
$IP link add mva type veth peer name mvb && $IP link set mva netns $nsa && $IP link set mvb netns $nsb && echo "veth-ok"
nsenter -t $nsa -n $IP addr add 10.99.0.1/24 dev mva
nsenter -t $nsa -n $IP link set mva up
nsenter -t $nsa -n $IP link set lo up
nsenter -t $nsb -n $IP addr add 10.99.0.2/24 dev mvb
nsenter -t $nsb -n $IP link set mvb up
nsenter -t $nsb -n $IP link set lo up
nsenter -t $nsa -n ping -c 1 -W 5 10.99.0.2 >/dev/null 2>&1 && echo "link-ok"
cp "$LAB_EXTRA/snap/disk.img" /tmp/disk.img
rm -f /tmp/na.sock /tmp/nb.sock
nsenter -t $nsa -n kite --api-sock /tmp/na.sock --level info >/tmp/cna 2>/tmp/cna.err &
src=$!
nsenter -t $nsb -n kite --api-sock /tmp/nb.sock --level info >/tmp/cnb 2>/tmp/cnb.err &
dst=$!
i=0; while { [ ! -S /tmp/na.sock ] || [ ! -S /tmp/nb.sock ]; } && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
boot_vm /tmp/na.sock $STOP
wait_for /tmp/cna 'SNAP: tick 5 ' 300 $src && echo "at-5"
echo "receive $(api /tmp/nb.sock PUT /migration/receive '{"listen":"10.99.0.2:7002"}')"
echo "send $(api /tmp/na.sock PUT /migration/send '{"destination":"10.99.0.2:7002","downtime_ms":50}')"
wait $src
echo "src-rc $?"
echo "src-last $(last_tick /tmp/cna)"
api /tmp/nb.sock GET /migration >/dev/null; echo "dst-status $(cat /tmp/body)"
wait_for /tmp/cnb 'SNAP: done' 300 $dst
wait $dst
echo "dst-rc $?"
echo "--- src"; show /tmp/cna
echo "--- dst"; show /tmp/cnb
kill $nsa $nsb
echo "=== END migns"

echo "=== BEGIN migfail"
cp "$LAB_EXTRA/snap/disk.img" /tmp/disk.img
start_kite /tmp/src.sock /tmp/csrc
src=$pid
boot_vm /tmp/src.sock 0
wait_for /tmp/csrc 'SNAP: tick 3 ' 300 $src && echo "at-3"
start_kite /tmp/dst.sock /tmp/cdst
dst=$pid
echo "receive $(api /tmp/dst.sock PUT /migration/receive '{"listen":"127.0.0.1:7001"}')"
echo "send $(api /tmp/src.sock PUT /migration/send '{"destination":"127.0.0.1:7001"}')"
i=0; while [ $i -lt 200 ]; do
	api /tmp/dst.sock GET /migration >/dev/null
	grep -q '"state":"receiving"' /tmp/body && break
	i=$((i+1)); sleep 0.05
done
kill -9 $dst
echo "killed-dst-while $(cat /tmp/body)"
i=0; while [ $i -lt 300 ]; do
	api /tmp/src.sock GET /migration >/dev/null
	grep -q '"state":"failed"' /tmp/body && break
	i=$((i+1)); sleep 0.1
done
echo "src-status $(cat /tmp/body)"
t=$(last_tick /tmp/csrc | cut -d' ' -f1)
wait_for /tmp/csrc "SNAP: tick $((t + 2)) " 60 $src && echo "src-runs-on"
api /tmp/src.sock GET / >/dev/null; echo "src-state $(cat /tmp/body)"
kill $src
wait $src
echo "=== END migfail"
'''


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if not shutil.which("mkfs.ext4", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin"):
        pytest.skip("mkfs.ext4 (e2fsprogs) is not installed")
    subprocess.run(["make", "-s", "-C", REPO, "all"], check=True)
    tmp = tmp_path_factory.mktemp("labsnap")
    extra = tmp / "snap"
    extra.mkdir()
    mkfs = shutil.which("mkfs.ext4", path="/usr/sbin:/sbin:" + os.environ.get("PATH", ""))
    subprocess.run([mkfs, "-q", "-F", "-L", "snap", str(extra / "disk.img"), "16M"], check=True)
    fetch = subprocess.run([os.path.join(REPO, "tests/lab/fetch.sh"), "--quiet"], check=True,
                           stdout=subprocess.PIPE, text=True).stdout
    modules = re.search(r"^LAB_MODULES=(.*)$", fetch, re.M).group(1)
    shutil.copy(os.path.join(modules, "kernel/drivers/net/veth.ko"), extra / "veth.ko")
    guest = tmp / "guest.sh"
    guest.write_text(GUEST)
    inner = tmp / "inner.cpio.gz"
    subprocess.run([os.path.join(REPO, "tests/lab/mkinitrd-inner.sh"), "--extra-script", str(guest), str(inner)],
                   check=True, stdout=subprocess.DEVNULL)
    script = tmp / "snap.sh"
    script.write_text(SCRIPT)
    cmd = [os.path.join(REPO, "tests/lab/run-lab.sh"), "--kite", os.path.join(REPO, "build/kite"),
           "--inner", str(inner), "--extra", str(extra), "--bin", "curl",
           "--bin", shutil.which("ip", path="/usr/sbin:/sbin:/usr/bin:/bin"),
           "--env", "BOOT_ARGS=" + ARGS, "--env", f"STOP={STOP}", "--script", str(script), "--timeout", "1200"]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=1300)
    out = proc.stdout.decode(errors="replace").replace("\r", "")
    sys.stderr.write(out[-6000:])
    assert "LAB: ready" in out, "the outer VM did not come up:\n" + out[-2000:]
    return {m.group(1): m.group(2) for m in re.finditer(r"=== BEGIN (\S+)\n(.*?)=== END \1", out, re.S)}


def section(lab, name):
    assert name in lab, f"{name} did not finish in the lab"
    return lab[name]


def value(text, key):
    m = re.search(r"^" + re.escape(key) + r" (.*)$", text, re.M)
    assert m, f"no '{key}' line in:\n{text[-3000:]}"
    return m.group(1)


def ticks(text):
    return [(int(n), float(u)) for n, u in re.findall(r"SNAP: tick (\d+) up=([\d.]+)", text)]


def at(text, key):
    n, up = value(text, key).split(" up=")
    return int(n), float(up)


def assert_carried_on(text, snap_at, wall_gap):
    """Ticks resume right after the snapshot's, every one follows the one before,
    the guest's uptime goes on from where it stood (it neither went back nor jumped
    by the wall time in between), and the disk log is whole."""
    t = ticks(text)
    assert t, text[-3000:]
    n0, up0 = snap_at
    assert t[0][0] in (n0, n0 + 1), (snap_at, t[:3])  # n0 again: its line was cut by the pause
    assert [n for n, _ in t] == list(range(t[0][0], STOP + 1)), t
    first_new = next(up for n, up in t if n == n0 + 1)
    assert up0 < first_new < up0 + min(2.0, wall_gap), (snap_at, first_new)
    assert "uptime-back" not in text
    assert "SNAP: log-ok" in text and f"SNAP: done {STOP}" in text, text[-3000:]
    assert value(text, "kite-rc") == "0"


def test_snapshots_written(lab):
    text = section(lab, "snap")
    assert value(text, "full").startswith("204"), text
    assert value(text, "diff").startswith("204"), text
    m1_kib, m1_size = map(int, value(text, "m1").split())
    m2_kib, m2_size = map(int, value(text, "m2").split())
    assert m1_size == m2_size == 256 << 20
    assert m1_kib < 256 << 10          # zero pages are holes
    assert 0 < m2_kib < m1_kib         # the diff: what changed in five ticks
    assert at(text, "full-at")[0] >= 5 and at(text, "diff-at")[0] >= 10


@pytest.mark.parametrize("name", ["restore1", "restore2"])
def test_full_snapshot_restores_and_carries_on(lab, name):
    text = section(lab, name)
    assert value(text, "load").startswith("204"), text
    assert_carried_on(text, at(section(lab, "snap"), "full-at"), 3.0)


def test_diff_on_full_restores_and_carries_on(lab):
    text = section(lab, "diff")
    assert value(text, "fold-rc") == "0", text
    assert value(text, "load").startswith("204"), text
    assert_carried_on(text, at(section(lab, "snap"), "diff-at"), 3.0)


def assert_migrated(text, dest):
    """The source handed over to dest and exited 0; the destination's ticks follow the
    source's last one (or repeat it, when the pause cut its line), to the end, its
    uptime never went back, and the disk log is whole."""
    assert value(text, "receive") == "204" and value(text, "send") == "204", text
    assert value(text, "src-rc") == "0", text
    assert re.search(r"migrated to " + re.escape(dest) + r" \(paused [\d.]+ ms\)", text), text
    dst = text.split("--- dst")[1]
    last = at(text, "src-last")
    t = ticks(dst)
    assert t and t[0][0] in (last[0], last[0] + 1), (last, t[:3])
    assert [n for n, _ in t] == list(range(t[0][0], STOP + 1))
    assert "uptime-back" not in dst
    assert "SNAP: log-ok" in dst and f"SNAP: done {STOP}" in dst, dst[-3000:]
    assert value(text, "dst-rc") == "0"


def test_migration_finishes_the_work_at_the_destination(lab):
    text = section(lab, "migrate")
    assert_migrated(text, "127.0.0.1:7000")
    assert '"state":"completed"' in value(text, "dst-status") or "completed" in text


def test_migration_across_network_namespaces(lab):
    """The same, the two kites in network namespaces of their own joined by veth: the
    stream crosses a link, not loopback."""
    text = section(lab, "migns")
    assert "veth-ok" in text and "link-ok" in text, text
    assert_migrated(text, "10.99.0.2:7002")
    assert '"peer":"10.99.0.1"' in value(text, "dst-status"), text


def test_destination_killed_midway_source_runs_on(lab):
    text = section(lab, "migfail")
    assert '"state":"receiving"' in value(text, "killed-dst-while"), text
    st = value(text, "src-status")
    assert '"state":"failed"' in st and "runs on here" in st, st
    assert "src-runs-on" in text, text
    assert '"state":"Running"' in value(text, "src-state")

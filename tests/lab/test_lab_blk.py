"""virtio-blk under a real Linux guest, in the nested-SVM lab.

The host (this test) builds an ext4 image with `mkfs.ext4 -d` holding known
files, and a raw 1 MiB + 100 byte image for a read-only second disk. One lab
run boots the inner guest three times from the same two image files:

- boot1: the guest sees vda (the ext4 image, first --disk) and vdb (read-only,
  its serial, 2048 sectors: the tail is unreachable), write-back cache (FLUSH
  offered), seg_max; mounts vda, checks the known files, writes new ones,
  `sync`s, fails to write vdb, reads vdb whole, unmounts.
- host1: in the outer VM (kite's host), debugfs reads the file boot1 wrote
  straight from the image file, and `e2fsck -fn` finds the filesystem clean:
  the guest's writes landed where ext4 put them, nothing else moved.
- boot2: a fresh guest (cold page cache) reads back what boot1 wrote.
- crash: the guest writes, `sync`s (write + flush requests answered), says
  so, and kite is killed with SIGKILL while the guest idles; host3 replays
  the journal with e2fsck and finds the synced data in the image file: what
  the guest was told is on disk is in the file, not in kite's memory.
(What fdatasync adds beyond that, surviving a host power loss, cannot be seen
from a lab; tests/unit/test_virtio_blk.c checks that a flush cleans the dirty
page-cache pages before it is answered.)

The outer VM has no e2fsprogs of its own: debugfs and e2fsck go in with
run-lab.sh --bin, with their libraries.
"""
import hashlib
import os
import re
import shutil
import subprocess
import sys

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BASE = "console=ttyS0 reboot=k panic=1 quiet"
HELLO = "kite virtio-blk lab file"
RO_SERIAL = "RO-SERIAL-0123456789"  # 20 bytes: no terminator on the wire
DISK_MIB = 24

# The inner guest's part (/lab-extra.sh), by phase (kite.blk=N).
GUEST = r'''
b() { echo "BLK: $*"; }
phase=0
for w in $(cat /proc/cmdline); do case $w in kite.blk=*) phase=${w#kite.blk=} ;; esac; done
b "phase $phase"
b "disks $(cd /sys/block && echo vd*)"
for d in vda vdb; do
	[ -e /sys/block/$d ] || continue
	q=/sys/block/$d/queue
	b "$d size=$(cat /sys/block/$d/size) ro=$(cat /sys/block/$d/ro) serial=$(cat /sys/block/$d/serial) lbs=$(cat $q/logical_block_size) segs=$(cat $q/max_segments) cache=$(cat $q/write_cache | tr ' ' -)"
done
mkdir -p /mnt
mount -t ext4 /dev/vda /mnt
b "mount rc=$?"
case $phase in
1)
	b "hello $(cat /mnt/hello.txt)"
	b "big $(md5sum /mnt/big.bin | cut -d' ' -f1)"
	echo "written in boot 1" >/mnt/written.txt
	dd if=/dev/urandom of=/mnt/random.bin bs=65536 count=32 2>/dev/null
	b "random $(md5sum /mnt/random.bin | cut -d' ' -f1)"
	sync
	b "sync rc=$?"
	dd if=/dev/zero of=/dev/vdb bs=512 count=1 conv=fsync 2>/tmp/dd.err
	b "ro-write rc=$?"
	b "ro-write-err $(head -1 /tmp/dd.err)"
	b "vdb-md5 $(md5sum /dev/vdb | cut -d' ' -f1)"
	umount /mnt
	b "umount rc=$?"
	;;
2)
	b "written $(cat /mnt/written.txt)"
	b "random $(md5sum /mnt/random.bin | cut -d' ' -f1)"
	b "big $(md5sum /mnt/big.bin | cut -d' ' -f1)"
	umount /mnt
	b "umount rc=$?"
	;;
3)
	echo "synced before the kill" >/mnt/crash.txt
	dd if=/dev/urandom of=/mnt/crash.bin bs=65536 count=16 2>/dev/null
	b "crash-md5 $(md5sum /mnt/crash.bin | cut -d' ' -f1)"
	sync
	b "synced"
	sleep 900 # kite is killed here
	;;
esac
'''

# The outer VM's part.
SCRIPT = r'''
cp "$LAB_EXTRA/blk/disk.img" "$LAB_EXTRA/blk/ro.img" /tmp/ || exit 1
boot() {
	kite run --kernel "$LAB_KERNEL" --initrd "$LAB_INITRD" --cpus 1 --mem 256 --level info \
		--cmdline "$BASE kite.blk=$1" \
		--disk /tmp/disk.img,id=rootdisk --disk "/tmp/ro.img,ro,id=rodisk,serial=$RO_SERIAL"
}
wait_for() { # FILE PATTERN SECONDS PID: gives up when PID is gone
	i=0; while ! grep -q "$2" "$1" 2>/dev/null; do
		i=$((i+1)); [ $i -gt $(($3*10)) ] && return 1; kill -0 "$4" 2>/dev/null || return 1; sleep 0.1
	done
}
host() {
	debugfs -R "cat /written.txt" /tmp/disk.img 2>/dev/null | sed 's/^/HOST: written /'
	e2fsck -fn /tmp/disk.img >/tmp/fsck.log 2>&1
	echo "HOST: fsck rc=$?"
	[ -s /tmp/fsck.log ] && sed 's/^/fsck: /' /tmp/fsck.log | tail -20
	echo "HOST: ro-md5 $(md5sum /tmp/ro.img | cut -d' ' -f1)"
}

echo "=== BEGIN boot1"; boot 1; echo "=== END boot1 rc=$?"
echo "=== BEGIN host1"; host; echo "=== END host1 rc=0"
echo "=== BEGIN boot2"; boot 2; echo "=== END boot2 rc=$?"

echo "=== BEGIN crash"
boot 3 >/tmp/console 2>&1 &
pid=$!
wait_for /tmp/console 'BLK: synced' 300 $pid && echo "saw-synced"
kill -9 $pid
wait $pid
echo "kite-rc $?"
grep -E 'BLK:|kite:' /tmp/console
echo "=== END crash rc=0"

echo "=== BEGIN host3"
e2fsck -fy /tmp/disk.img >/tmp/fsck.log 2>&1
echo "HOST: replay rc=$?"
e2fsck -fn /tmp/disk.img >/tmp/fsck2.log 2>&1
echo "HOST: fsck rc=$?"
sed 's/^/fsck: /' /tmp/fsck2.log | tail -20
debugfs -R "cat /crash.txt" /tmp/disk.img 2>/dev/null | sed 's/^/HOST: crash /'
debugfs -R "dump /crash.bin /tmp/crash.bin" /tmp/disk.img 2>/dev/null
echo "HOST: crash-md5 $(md5sum /tmp/crash.bin | cut -d' ' -f1)"
echo "=== END host3 rc=0"
'''


def big_bytes():
    """3 MiB that differ everywhere: a misplaced sector changes the sum."""
    out = bytearray()
    h = b"kite"
    while len(out) < 3 << 20:
        h = hashlib.sha256(h).digest()
        out += h
    return bytes(out[:3 << 20])


def ro_bytes():
    return bytes((i * 7 + (i >> 9)) & 0xff for i in range((1 << 20) + 100))


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    for tool in ("mkfs.ext4", "debugfs", "e2fsck"):
        if not shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin"):
            pytest.skip(f"{tool} (e2fsprogs) is not installed")
    subprocess.run(["make", "-s", "-C", REPO, "all"], check=True)
    tmp = tmp_path_factory.mktemp("labblk")
    root = tmp / "root"
    root.mkdir()
    (root / "hello.txt").write_text(HELLO + "\n")
    (root / "big.bin").write_bytes(big_bytes())
    extra = tmp / "blk"
    extra.mkdir()
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "kitelab", "-d", str(root),
                    str(extra / "disk.img"), f"{DISK_MIB}M"], check=True)
    (extra / "ro.img").write_bytes(ro_bytes())
    guest = tmp / "guest.sh"
    guest.write_text(GUEST)
    inner = tmp / "inner.cpio.gz"
    subprocess.run([os.path.join(REPO, "tests/lab/mkinitrd-inner.sh"), "--extra-script", str(guest),
                    str(inner)], check=True, stdout=subprocess.DEVNULL)
    script = tmp / "blk.sh"
    script.write_text(SCRIPT)
    sbin = lambda t: shutil.which(t, path="/usr/sbin:/sbin:" + os.environ.get("PATH", ""))
    cmd = [os.path.join(REPO, "tests/lab/run-lab.sh"), "--kite", os.path.join(REPO, "build/kite"),
           "--inner", str(inner), "--extra", str(extra),
           "--bin", sbin("debugfs"), "--bin", sbin("e2fsck"),
           "--env", "BASE=" + BASE, "--env", "RO_SERIAL=" + RO_SERIAL,
           "--script", str(script), "--timeout", "900"]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=1000)
    out = proc.stdout.decode(errors="replace").replace("\r", "")
    sys.stderr.write(out[-5000:])
    assert "LAB: ready" in out, "the outer VM did not come up:\n" + out[-2000:]
    sections = {}
    for m in re.finditer(r"=== BEGIN (\S+)\n(.*?)=== END \1 rc=(\d+)", out, re.S):
        sections[m.group(1)] = (m.group(2), int(m.group(3)))
    return sections


def section(lab, name):
    assert name in lab, f"{name} did not finish in the lab"
    return lab[name]


def blk(text, key):
    """Value of the guest's `BLK: key value` line (or the host's `HOST: key value`)."""
    m = re.search(r"^(?:BLK|HOST): " + re.escape(key) + r"(?: (.*))?$", text, re.M)
    assert m, f"no '{key}' line in:\n{text[-3000:]}"
    return m.group(1) or ""


def disk_attrs(text, dev):
    return dict(kv.split("=", 1) for kv in blk(text, dev).split())


def md5(data):
    return hashlib.md5(data).hexdigest()


def test_two_disks_in_order(lab):
    text, rc = section(lab, "boot1")
    assert rc == 0, text[-3000:]
    assert blk(text, "disks") == "vda vdb"
    assert "kite: info: virtio-blk0: disk 'rootdisk' ('/tmp/disk.img')" in text
    assert "kite: info: virtio-blk1: disk 'rodisk' ('/tmp/ro.img'), 2048 sectors, read-only" in text
    vda, vdb = disk_attrs(text, "vda"), disk_attrs(text, "vdb")
    assert vda["size"] == str(DISK_MIB * 2048)
    assert vda["ro"] == "0"
    assert vda["serial"] == "rootdisk"  # GET_ID: the drive id without serial=
    assert vdb["ro"] == "1"             # VIRTIO_BLK_F_RO
    assert vdb["serial"] == RO_SERIAL
    # 1 MiB + 100 bytes: whole sectors only
    assert vdb["size"] == "2048"
    for d in (vda, vdb):
        assert d["lbs"] == "512"         # blk_size
        assert d["segs"] == "254"        # seg_max
        assert d["cache"] == "write-back"  # FLUSH offered: the guest sends flushes


def test_guest_reads_the_host_built_filesystem(lab):
    text, _ = section(lab, "boot1")
    assert blk(text, "mount rc=0") == ""
    assert blk(text, "hello") == HELLO
    assert blk(text, "big") == md5(big_bytes())


def test_guest_writes_and_syncs(lab):
    text, _ = section(lab, "boot1")
    assert blk(text, "sync rc=0") == ""
    assert blk(text, "umount rc=0") == ""


def test_read_only_disk_refuses_writes(lab):
    text, _ = section(lab, "boot1")
    assert blk(text, "ro-write rc=1") == ""
    # Linux refuses the write itself (the disk is marked read-only), so the
    # device's own IOERR for writes is checked by the unit tests.
    assert re.search(r"Operation not permitted|Read-only|I/O error", blk(text, "ro-write-err"))
    # the guest reads the whole disk: the image's first 2048 sectors
    assert blk(text, "vdb-md5") == md5(ro_bytes()[:1 << 20])
    host, _ = section(lab, "host1")
    assert blk(host, "ro-md5") == md5(ro_bytes())  # the image file is unchanged


def test_writes_reach_the_image_file(lab):
    text, _ = section(lab, "host1")
    assert blk(text, "written") == "written in boot 1"
    assert blk(text, "fsck rc=0") == ""


def test_second_boot_reads_what_the_first_wrote(lab):
    first, _ = section(lab, "boot1")
    text, rc = section(lab, "boot2")
    assert rc == 0, text[-3000:]
    assert blk(text, "mount rc=0") == ""
    assert blk(text, "written") == "written in boot 1"
    assert blk(text, "random") == blk(first, "random")
    assert blk(text, "big") == md5(big_bytes())
    assert blk(text, "umount rc=0") == ""


def test_synced_data_survives_killing_kite(lab):
    text, _ = section(lab, "crash")
    assert "saw-synced" in text, text[-3000:]
    assert "kite-rc 137" in text  # SIGKILL
    host, _ = section(lab, "host3")
    # e2fsck: 0 clean, 1 "fixed" (here: the journal replayed)
    assert re.search(r"^HOST: replay rc=[01]$", host, re.M), host
    assert blk(host, "fsck rc=0") == ""
    assert blk(host, "crash") == "synced before the kill"
    assert blk(host, "crash-md5") == blk(text, "crash-md5")

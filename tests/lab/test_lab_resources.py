"""Resource control with a real Linux guest in the nested-SVM lab (issue 7's
tests 3 and 4, and issue 6's I/O-bound label). One lab run, three VMs:

1. limits: kite through the API with two disks (vda unlimited, vdb limited
   to 1 MiB/s) and a network interface whose tx is limited to 1 MiB/s.
   - phase 0: the guest reads vda with 4 KiB O_DIRECT requests; meanwhile the
     outer VM samples `kite stat`: the windows must be labelled io-bound;
   - phase 1: 8 MiB from vdb and 8 MiB over TCP to the outer VM, each timed
     (after a warm-up that empties the buckets): both within 10% of 1 MiB/s;
   - the outer VM PATCHes vdb (a new, larger image and 2 MiB/s) and the
     interface (tx 2 MiB/s); the guest waits until vdb's size changes (the
     config-change interrupt: PATCH reached the running device), then
   - phase 2: the same transfers, now within 10% of 2 MiB/s.
2. huge pages: with no 2 MiB pages reserved, --huge-pages 2M fails with one
   line; with 80 reserved the guest boots and kite's memory is hugetlb.
3. KSM: two guests with --ksm, identical kernels and initramfs: ksmd merges
   pages, and both kite processes report merged pages.
"""
import json
import os
import re
import statistics
import subprocess
import sys

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MIB = 1 << 20

GUEST = r'''
v() { echo "RES: $*"; }
for w in $(cat /proc/cmdline); do case $w in kite.res=*) mode=${w#kite.res=} ;; esac; done
[ "$mode" = limits ] || exit 0
ip link set eth0 up
ip addr add 10.0.0.2/24 dev eth0
v "phase0 begin"
dd if=/dev/vda of=/dev/null bs=4k count=6000 iflag=direct 2>/dev/null
v "phase0 end"
for ph in 1 2; do
	vbench seqread /dev/vdb 1 >/dev/null          # warm-up: empties the bucket
	v "blk$ph $(vbench seqread /dev/vdb 8)"
	vbench send 10.0.0.1 5002 1 >/dev/null        # warm-up (its receiver is counted apart)
	v "net$ph-warm"
	timeout 120 vbench send 10.0.0.1 5003 8 >/dev/null
	v "net$ph-sent"
	if [ $ph = 1 ]; then
		s=$(cat /sys/block/vdb/size)
		v "phase1 done size=$s"
		i=0
		while [ "$(cat /sys/block/vdb/size)" = "$s" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
		v "vdb size now $(cat /sys/block/vdb/size)"
	fi
done
v "done"
'''

OUTER = r'''
dmesg -n 1
VB=$LAB_EXTRA/vbench
dd if=/dev/zero of=/tmp/a.img bs=1M count=64 2>/dev/null
dd if=/dev/zero of=/tmp/b.img bs=1M count=32 2>/dev/null
dd if=/dev/zero of=/tmp/b2.img bs=1M count=48 2>/dev/null
tunctl -t tapr >/dev/null && ip addr add 10.0.0.1/24 dev tapr && ip link set tapr up
# ---- 1: limits ----
cat > /tmp/vm.json <<EOT
{"boot-source": {"kernel_image_path": "$LAB_KERNEL", "initrd_path": "$LAB_INITRD",
  "boot_args": "console=ttyS0 reboot=k panic=1 quiet kite.res=limits kite.action=poweroff"},
 "machine-config": {"vcpu_count": 1, "mem_size_mib": 256},
 "drives": [{"drive_id": "a", "path_on_host": "/tmp/a.img", "is_root_device": false, "is_read_only": true},
            {"drive_id": "b", "path_on_host": "/tmp/b.img", "is_root_device": false, "is_read_only": true,
             "rate_limiter": {"bandwidth": {"size": 262144, "refill_time": 250}}}],
 "network-interfaces": [{"iface_id": "eth0", "host_dev_name": "tapr",
             "tx_rate_limiter": {"bandwidth": {"size": 262144, "refill_time": 250}}}]}
EOT
$VB recv 5002 >/dev/null 2>&1 &
$VB recv 5003 >/tmp/net1.out 2>&1 &
kite --api-sock /tmp/r.sock --config-file /tmp/vm.json >/tmp/con 2>&1 &
kpid=$!
t=0; patched=0; p0=0
while kill -0 $kpid 2>/dev/null && [ $t -lt 2400 ]; do
	c=$(tr -d '\r' </tmp/con)
	case $c in *"RES: phase0 begin"*) case $c in *"RES: phase0 end"*) p0=2 ;; *) p0=1 ;; esac ;; esac
	if [ $p0 = 1 ]; then
		echo "STATPHASE $(kite stat --api-sock /tmp/r.sock --format prometheus 2>/dev/null | grep -E '^kite_(phase_probability|exits_per_second|halted_ratio)' | sed 's/vm="[^"]*",*//' | tr '\n' ' ')"
	fi
	case $c in *"RES: net1-sent"*) [ -f /tmp/net1.done ] || { cat /tmp/net1.out | sed 's/^/NET1 /'; touch /tmp/net1.done;
		$VB recv 5002 >/dev/null 2>&1 & $VB recv 5003 >/tmp/net2.out 2>&1 & } ;; esac
	case $c in *"RES: phase1 done"*)
		if [ $patched = 0 ]; then
			patched=1
			curl -s --unix-socket /tmp/r.sock -X PATCH http://localhost/network-interfaces/eth0 \
				-d '{"iface_id": "eth0", "tx_rate_limiter": {"bandwidth": {"size": 524288, "refill_time": 250}}}' -w 'PATCH-NET %{http_code}\n'
			curl -s --unix-socket /tmp/r.sock -X PATCH http://localhost/drives/b \
				-d '{"drive_id": "b", "path_on_host": "/tmp/b2.img", "rate_limiter": {"bandwidth": {"size": 524288, "refill_time": 250}}}' -w 'PATCH-BLK %{http_code}\n'
		fi ;;
	esac
	sleep 0.1
	t=$((t + 1))
done
kill $kpid 2>/dev/null
wait $kpid
echo "LIMITS-RC $?"
cat /tmp/net2.out | sed 's/^/NET2 /'
tr -d '\r' </tmp/con | grep -E '^RES:'
# ---- 2: huge pages ----
echo 0 > /proc/sys/vm/nr_hugepages
kite run --kernel "$LAB_KERNEL" --initrd "$LAB_INITRD" --mem 128 --huge-pages 2M \
	--cmdline "console=ttyS0 reboot=k panic=1 quiet" >/tmp/h0 2>&1
echo "HUGE0-RC $?"
grep 'kite: error' /tmp/h0 | sed 's/^/HUGE0 /'
echo 80 > /proc/sys/vm/nr_hugepages
echo "HUGE-RESERVED $(grep HugePages_Total /proc/meminfo)"
kite run --kernel "$LAB_KERNEL" --initrd "$LAB_INITRD" --mem 128 --huge-pages 2M \
	--cmdline "console=ttyS0 reboot=k panic=1 quiet kite.action=idle" >/tmp/h1 2>&1 &
hp=$!
i=0; while ! grep -q init-reached /tmp/h1 && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
echo "HUGE1 init=$(grep -c init-reached /tmp/h1) $(grep HugePages_Free /proc/meminfo) $(grep HugePages_Rsvd /proc/meminfo) hugetlb_kib=$(grep '^Private_Hugetlb' /proc/$hp/smaps_rollup | tr -s ' ' | cut -d' ' -f2)"
kill $hp; wait $hp
echo 0 > /proc/sys/vm/nr_hugepages
# ---- 3: KSM ----
echo 10000 > /sys/kernel/mm/ksm/pages_to_scan
echo 20 > /sys/kernel/mm/ksm/sleep_millisecs
echo 1 > /sys/kernel/mm/ksm/run
for n in 1 2; do
	kite run --kernel "$LAB_KERNEL" --initrd "$LAB_INITRD" --mem 128 --ksm \
		--cmdline "console=ttyS0 reboot=k panic=1 quiet kite.action=idle" >/tmp/k$n 2>&1 &
	eval "kp$n=\$!"
done
i=0
while [ $i -lt 900 ]; do
	sh=$(cat /sys/kernel/mm/ksm/pages_shared)
	[ "$sh" -gt 200 ] && [ "$(cat /proc/$kp1/ksm_merging_pages)" -gt 0 ] && [ "$(cat /proc/$kp2/ksm_merging_pages)" -gt 0 ] && break
	sleep 0.1; i=$((i + 1))
done
echo "KSM shared=$(cat /sys/kernel/mm/ksm/pages_shared) sharing=$(cat /sys/kernel/mm/ksm/pages_sharing) vm1=$(cat /proc/$kp1/ksm_merging_pages) vm2=$(cat /proc/$kp2/ksm_merging_pages)"
kill $kp1 $kp2; wait
'''


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    subprocess.run(["make", "-s", "-C", REPO, "all"], check=True)
    subprocess.run(["make", "-s", "-f", os.path.join(REPO, "bench/Makefile")], check=True)
    tmp = tmp_path_factory.mktemp("labres")
    (tmp / "guest.sh").write_text(GUEST)
    (tmp / "outer.sh").write_text(OUTER)
    inner = tmp / "inner.cpio.gz"
    vbench = os.path.join(REPO, "build/bench/vbench")
    subprocess.run([os.path.join(REPO, "tests/lab/mkinitrd-inner.sh"), "--extra-script", str(tmp / "guest.sh"),
                    "--add", vbench + ":/bin/vbench", str(inner)], check=True, stdout=subprocess.DEVNULL)
    curl = subprocess.run(["sh", "-c", "command -v curl"], capture_output=True, text=True).stdout.strip()
    cmd = [os.path.join(REPO, "tests/lab/run-lab.sh"), "--kite", os.path.join(REPO, "build/kite"),
           "--inner", str(inner), "--extra", vbench, "--bin", curl, "--script", str(tmp / "outer.sh"),
           "--timeout", "900"]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=1000)
    out = proc.stdout.decode(errors="replace").replace("\r", "")
    sys.stderr.write(out[-3000:])
    assert "LAB: ready" in out, out[-2000:]
    return out


def vb(out, key):
    """The VBENCH line a RES: KEY line carries: bytes, secs."""
    m = re.search(r"^(?:RES: %s |%s )VBENCH \S+ (\d+) \d+ ([0-9.]+)$" % (key, key), out, re.M)
    assert m, f"no {key} measurement"
    return int(m.group(1)), float(m.group(2))


def rate(out, key):
    b, s = vb(out, key)
    return b / s / MIB


def test_io_bound_label_under_dd(lab):
    rows = re.findall(r"^STATPHASE (.*)$", lab, re.M)
    labels = []
    for r in rows:
        post = dict(re.findall(r'phase="([a-z-]+)"\} ([0-9.]+)', r))
        if len(post) == 4:
            labels.append(max(post, key=lambda k: float(post[k])))
    assert len(labels) >= 3, rows
    # the first samples may still hold the boot's window
    assert labels.count("io-bound") >= len(labels) // 2, labels


def test_disk_rate_limit_and_patch(lab):
    r1, r2 = rate(lab, "blk1"), rate(lab, "blk2")
    assert abs(r1 - 1.0) <= 0.1, r1
    assert "PATCH-BLK 204" in lab
    m = re.search(r"RES: phase1 done size=(\d+)", lab)
    assert m and int(m.group(1)) == 32 * 2048
    assert f"RES: vdb size now {48 * 2048}" in lab  # the new image, seen by the running guest
    assert abs(r2 - 2.0) <= 0.2, r2


def test_network_tx_rate_limit_and_patch(lab):
    b1, s1 = [(int(a), float(b)) for a, b in re.findall(r"^NET1 VBENCH recv (\d+) \d+ ([0-9.]+)$", lab, re.M)][0]
    b2, s2 = [(int(a), float(b)) for a, b in re.findall(r"^NET2 VBENCH recv (\d+) \d+ ([0-9.]+)$", lab, re.M)][0]
    assert b1 == b2 == 8 * MIB
    assert abs(b1 / s1 / MIB - 1.0) <= 0.1, b1 / s1 / MIB
    assert "PATCH-NET 204" in lab
    assert abs(b2 / s2 / MIB - 2.0) <= 0.2, b2 / s2 / MIB
    assert "RES: done" in lab


def test_huge_pages_without_reservation_fail_clearly(lab):
    m = re.search(r"HUGE0-RC (\d+)", lab)
    assert m and int(m.group(1)) == 1
    assert re.search(r"HUGE0 kite: error: huge pages 2M: cannot map 128 MiB .*vm.nr_hugepages", lab)


def test_huge_pages_back_the_guest(lab):
    m = re.search(r"HUGE1 init=(\d+) HugePages_Free: +(\d+) HugePages_Rsvd: +(\d+) hugetlb_kib=(\d+)", lab)
    assert m, "no huge-page run"
    booted, free, rsvd, kib = map(int, m.groups())
    assert booted == 1
    # the 64 pages of 128 MiB are kite's: those the guest touched, the rest reserved
    assert (80 - free) + rsvd == 64, (free, rsvd)
    assert kib == (80 - free) * 2048 and kib > 0  # the touched ones are in kite's memory


def test_ksm_merges_identical_guests(lab):
    m = re.search(r"KSM shared=(\d+) sharing=(\d+) vm1=(\d+) vm2=(\d+)", lab)
    assert m, "no KSM run"
    shared, sharing, vm1, vm2 = map(int, m.groups())
    assert shared > 200 and sharing > 0
    assert vm1 > 0 and vm2 > 0

"""virtio-balloon with a real Linux guest, in the nested-SVM lab.

The guest first makes most of its RAM resident in kite (fills a tmpfs, then
deletes the file: the pages are free in the guest but still backed in the
host), then the balloon inflates, and kite's RSS in the outer VM must drop by
about the balloon's size while the guest's MemTotal drops by exactly that.

One lab run, two scenarios:
- cli: `kite run --balloon 128`. The driver inflates at boot; the guest removes
  it (every page comes back: MemTotal up by 128 MiB), touches its memory, and
  loads it again. The drop is measured from VmHWM (the peak after touching).
- api: PUT /balloon with amount_mib 0 and statistics every second; once the
  guest touched its memory, PATCH /balloon {"amount_mib": 128} inflates it;
  GET /balloon/statistics reports the guest's numbers; PATCH back to 0 deflates
  (MemTotal comes back); statistics cannot be switched off after boot.
"""
import os
import re
import subprocess
import sys

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
ARGS = "console=ttyS0 reboot=k panic=1 quiet"
BALLOON_MIB = 128
GUEST_MIB = 256

# /lab-extra.sh in the inner guest, run by its /init after the virtio drivers
# are loaded. kite.balloon= on the command line picks the scenario.
GUEST = r'''
g() { echo "KITE-GUEST: $*"; }
mode=
for w in $(cat /proc/cmdline); do case $w in kite.balloon=*) mode=${w#kite.balloon=} ;; esac; done
[ -n "$mode" ] || exit 0
kb() { awk -v k="$1:" '$1 == k { print $2 }' /proc/meminfo; }
# until MemTotal OP KB, at most S seconds
wait_total() {
	i=0
	while ! [ "$(kb MemTotal)" "$1" "$2" ]; do
		i=$((i+1)); [ $i -gt $(($3*5)) ] && return 1; sleep 0.2
	done
}
# Makes the guest's free memory resident in the host: a tmpfs file of all but
# 40 MiB of it, deleted again (the pages are free, the host still backs them).
touch_memory() {
	n=$(( $(kb MemFree) / 1024 - 40 ))
	mkdir -p /fill
	mount -t tmpfs -o size=${n}m tmpfs /fill
	dd if=/dev/zero of=/fill/x bs=1M count=$n 2>/dev/null
	rm /fill/x
	umount /fill
	g "balloon touched mib $n memtotal_kb $(kb MemTotal) memfree_kb $(kb MemFree)"
}
# Keeps the guest up while the outer script reads kite's RSS; it kills kite.
linger() { i=0; while [ $i -lt 600 ]; do sleep 1; i=$((i+1)); done; }
g "balloon driver $(ls /sys/bus/virtio/drivers/virtio_balloon 2>/dev/null | grep virtio | tr '\n' ' ')"
case $mode in
cli)
	# Removing the driver deflates the balloon it inflated at boot.
	rmmod virtio_balloon || g "balloon rmmod failed"
	full=$(kb MemTotal)
	g "balloon full memtotal_kb $full"
	touch_memory
	insmod /lib/modules/virtio_balloon.ko || g "balloon insmod failed"
	if wait_total -le $((full - BALLOON_KB + 1024)) 180; then
		g "balloon inflated memtotal_kb $(kb MemTotal) memfree_kb $(kb MemFree)"
	else
		g "balloon not-inflated memtotal_kb $(kb MemTotal)"
	fi
	linger
	;;
api)
	full=$(kb MemTotal)
	g "balloon full memtotal_kb $full"
	touch_memory
	if wait_total -le $((full - BALLOON_KB + 1024)) 180; then
		g "balloon inflated memtotal_kb $(kb MemTotal) memfree_kb $(kb MemFree)"
	else
		g "balloon not-inflated memtotal_kb $(kb MemTotal)"
	fi
	if wait_total -ge "$full" 180; then
		g "balloon deflated memtotal_kb $(kb MemTotal)"
	else
		g "balloon not-deflated memtotal_kb $(kb MemTotal)"
	fi
	linger
	;;
esac
'''.replace("BALLOON_KB", str(BALLOON_MIB * 1024))

# Runs inside the outer VM (busybox sh, curl installed by run-lab.sh --bin).
SCRIPT = r'''
api() { curl -s -o /tmp/body -w '%{http_code}' --unix-socket "$1" -X "$2" "http://localhost$3" ${4:+-d "$4"}; }
wait_for() { # FILE PATTERN SECONDS
	i=0; while ! grep -q "$2" "$1" 2>/dev/null; do i=$((i+1)); [ $i -gt $(($3*10)) ] && return 1; sleep 0.1; done
}
status() { awk -v k="$2:" '$1 == k { print $2 }' /proc/$1/status; }
stop() { kill $1; wait $1; }

echo "=== BEGIN cli"
kite run --kernel "$LAB_KERNEL" --initrd "$LAB_INITRD" --mem GUEST_MIB --balloon BALLOON_MIB \
	--cmdline "$BOOT_ARGS kite.balloon=cli" --level info >/tmp/console 2>/tmp/kite.err &
pid=$!
if wait_for /tmp/console 'KITE-GUEST: balloon \(inflated\|not-inflated\)' 400; then
	echo "rss_kb $(status $pid VmRSS)"
	echo "hwm_kb $(status $pid VmHWM)"
fi
stop $pid
grep -E 'KITE-GUEST: (balloon|memtotal_kb|virtio)' /tmp/console
grep -q 'KITE-GUEST: balloon inflated' /tmp/console || { echo "console:"; tail -40 /tmp/console; }
cat /tmp/kite.err
echo "=== END cli"

echo "=== BEGIN api"
kite --api-sock /tmp/b.sock --level info >/tmp/console 2>/tmp/kite.err &
pid=$!
i=0; while [ ! -S /tmp/b.sock ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
echo "boot-source $(api /tmp/b.sock PUT /boot-source "{\"kernel_image_path\":\"$LAB_KERNEL\",\"initrd_path\":\"$LAB_INITRD\",\"boot_args\":\"$BOOT_ARGS kite.balloon=api\"}")"
echo "machine-config $(api /tmp/b.sock PUT /machine-config '{"vcpu_count":1,"mem_size_mib":GUEST_MIB}')"
echo "put-balloon $(api /tmp/b.sock PUT /balloon '{"amount_mib":0,"deflate_on_oom":false,"stats_polling_interval_s":1}')"
echo "start $(api /tmp/b.sock PUT /actions '{"action_type":"InstanceStart"}')"
if wait_for /tmp/console 'KITE-GUEST: balloon touched' 400; then
	echo "rss_before_kb $(status $pid VmRSS)"
	echo "inflate $(api /tmp/b.sock PATCH /balloon '{"amount_mib":BALLOON_MIB}')"
	if wait_for /tmp/console 'KITE-GUEST: balloon \(inflated\|not-inflated\)' 240; then
		echo "rss_after_kb $(status $pid VmRSS)"
		# The guest refreshes its statistics every second (the device hands its
		# buffer back on a timer): wait for numbers taken after the inflation.
		inflated=$(sed -n 's/.*balloon inflated memtotal_kb \([0-9]*\).*/\1/p' /tmp/console)
		i=0; while [ $i -lt 100 ]; do
			api /tmp/b.sock GET /balloon/statistics >/dev/null
			total=$(sed -n 's/.*"total_memory": *\([0-9]*\).*/\1/p' /tmp/body)
			[ "${total:-0}" -eq $((inflated * 1024)) ] && break
			sleep 0.1; i=$((i+1))
		done
		echo "stats-code $(api /tmp/b.sock GET /balloon/statistics)"
		echo "stats $(cat /tmp/body)"
		echo "get-balloon-code $(api /tmp/b.sock GET /balloon)"
		echo "get-balloon $(cat /tmp/body)"
		echo "stats-interval $(api /tmp/b.sock PATCH /balloon/statistics '{"stats_polling_interval_s":2}')"
		echo "stats-off $(api /tmp/b.sock PATCH /balloon/statistics '{"stats_polling_interval_s":0}')"
		echo "deflate $(api /tmp/b.sock PATCH /balloon '{"amount_mib":0}')"
		wait_for /tmp/console 'KITE-GUEST: balloon \(deflated\|not-deflated\)' 240
	fi
fi
stop $pid
grep -E 'KITE-GUEST: (balloon|memtotal_kb|virtio)' /tmp/console
grep -q 'KITE-GUEST: balloon deflated' /tmp/console || { echo "console:"; tail -40 /tmp/console; }
cat /tmp/kite.err
echo "=== END api"
'''.replace("GUEST_MIB", str(GUEST_MIB)).replace("BALLOON_MIB", str(BALLOON_MIB))


@pytest.fixture(scope="session")
def lab_balloon(tmp_path_factory):
    subprocess.run(["make", "-s", "-C", REPO, "all"], check=True)
    tmp = tmp_path_factory.mktemp("labballoon")
    guest = tmp / "balloon-guest.sh"
    guest.write_text(GUEST)
    inner = tmp / "inner.cpio.gz"
    subprocess.run([os.path.join(REPO, "tests/lab/mkinitrd-inner.sh"), "--extra-script", str(guest),
                    str(inner)], check=True, stdout=subprocess.DEVNULL)
    script = tmp / "balloon.sh"
    script.write_text(SCRIPT)
    cmd = [os.path.join(REPO, "tests/lab/run-lab.sh"), "--kite", os.path.join(REPO, "build/kite"),
           "--bin", "curl", "--inner", str(inner), "--env", "BOOT_ARGS=" + ARGS,
           "--script", str(script), "--timeout", "1200"]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=1300)
    out = proc.stdout.decode(errors="replace").replace("\r", "")
    sys.stderr.write(out[-6000:])
    assert "LAB: ready" in out, "the outer VM did not come up:\n" + out[-2000:]
    return {m.group(1): m.group(2) for m in re.finditer(r"=== BEGIN (\S+)\n(.*?)=== END \1", out, re.S)}


def value(text, key):
    m = re.search(r"^" + re.escape(key) + r" (.*)$", text, re.M)
    assert m, f"no '{key}' line in:\n{text}"
    return m.group(1)


def guest_kb(text, what, field="memtotal_kb"):
    m = re.search(r"KITE-GUEST: balloon " + what + r"\b.*?\b" + field + r" (\d+)", text)
    assert m, f"no 'balloon {what} ... {field}' line in:\n{text}"
    return int(m.group(1))


BALLOON_KB = BALLOON_MIB * 1024


def test_cli_balloon_inflates_and_returns_memory(lab_balloon):
    t = lab_balloon["cli"]
    assert "KITE-GUEST: balloon driver virtio" in t, t  # the driver bound to kite's device
    full = guest_kb(t, "full")
    touched = int(re.search(r"KITE-GUEST: balloon touched mib (\d+)", t).group(1))
    assert touched >= 100, t
    inflated = guest_kb(t, "inflated")
    # the guest gave exactly the balloon's pages away
    assert abs(full - inflated - BALLOON_KB) <= 1024, t
    # ... and kite's RSS dropped by about as much from its peak
    rss, hwm = int(value(t, "rss_kb")), int(value(t, "hwm_kb"))
    assert hwm - rss >= 0.75 * BALLOON_KB, t
    assert "needs a reset" not in t, t


def test_api_balloon_inflate_stats_deflate(lab_balloon):
    t = lab_balloon["api"]
    assert value(t, "put-balloon") == "204"
    assert value(t, "start") == "204"
    full = guest_kb(t, "full")
    inflate = value(t, "inflate")
    assert inflate == "204", t
    inflated = guest_kb(t, "inflated")
    assert abs(full - inflated - BALLOON_KB) <= 1024, t
    before, after = int(value(t, "rss_before_kb")), int(value(t, "rss_after_kb"))
    assert before - after >= 0.75 * BALLOON_KB, t
    assert "needs a reset" not in t, t


def test_api_balloon_statistics(lab_balloon):
    t = lab_balloon["api"]
    assert value(t, "stats-code") == "200", t
    stats = value(t, "stats")
    num = lambda k: int(re.search(r'"' + k + r'": *(\d+)', stats).group(1))
    assert num("target_mib") == BALLOON_MIB
    assert num("target_pages") == BALLOON_MIB * 256
    assert num("actual_mib") == BALLOON_MIB
    assert num("actual_pages") == BALLOON_MIB * 256
    # the guest's own numbers (bytes), refreshed after the inflation: its
    # total is the MemTotal it printed once the balloon was full
    total = num("total_memory")
    assert total == guest_kb(t, "inflated") * 1024, stats
    assert 0 < num("free_memory") < total
    assert 0 < num("available_memory") <= total
    for k in ("swap_in", "swap_out", "major_faults", "minor_faults", "disk_caches"):
        num(k)
    assert num("minor_faults") > 0
    assert re.search(r'"amount_mib": *' + str(BALLOON_MIB) + r'\b', value(t, "get-balloon")), t
    assert value(t, "stats-interval") == "204"
    assert value(t, "stats-off") == "400"  # statistics cannot be switched off after boot


def test_api_balloon_deflates(lab_balloon):
    t = lab_balloon["api"]
    assert value(t, "deflate") == "204", t
    full = guest_kb(t, "full")
    # deflated from a full balloon, not a balloon that never inflated
    assert full - guest_kb(t, "inflated") >= BALLOON_KB - 1024, t
    assert t.index("KITE-GUEST: balloon inflated") < t.index("KITE-GUEST: balloon deflated"), t
    assert guest_kb(t, "deflated") >= full, t

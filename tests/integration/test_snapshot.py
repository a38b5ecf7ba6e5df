"""Snapshots on this host (docs/snapshots.md): PUT /snapshot/create on a paused VM,
PUT /snapshot/load in a fresh kite process, with tests/guests/counter.c, a guest
that counts LAPIC timer ticks on its console, writes a page of memory per tick and
checks the pages it wrote, asserts that its TSC never goes backwards, and with
stop=N prints "counter: done" after checking all its memory once more.

The guest's progress is read from its console lines ("count N tsc T"), never
timed. Refusals are checked for their one-line reason, and for leaving the
process able to load a good snapshot afterwards."""
import os
import re
import shutil
import struct
import subprocess
import time

import pytest

from kiteapi import spawn, wait_for, workdir  # noqa: F401 (fixtures)
from kitetest import GUESTS, needs_kvm

pytestmark = needs_kvm

COUNTER = GUESTS / "counter.elf"


def counts(text):
    return [(int(c), int(t)) for c, t in re.findall(r"^count (\d+) tsc (\d+)", text, re.M)]


def boot(spawn, stop, track=False, mem=64):
    k = spawn("--level", "info")
    assert k.req("PUT", "/boot-source", {"kernel_image_path": str(COUNTER),
                                         "boot_args": f"stop={stop}"}).status == 204
    assert k.req("PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": mem,
                                            "track_dirty_pages": track}).status == 204
    assert k.req("PUT", "/actions", {"action_type": "InstanceStart"}).status == 204
    return k


def snapshot(k, name, diff=False):
    """Pauses k, snapshots it into k's directory; returns (state, mem, console so far)."""
    assert k.req("PATCH", "/vm", {"state": "Paused"}).status == 204
    state, mem = k.dir / f"{name}.state", k.dir / f"{name}.mem"
    body = {"snapshot_path": str(state), "mem_file_path": str(mem)}
    if diff:
        body["snapshot_type"] = "Diff"
    r = k.req("PUT", "/snapshot/create", body)
    assert r.status == 204, r
    return state, mem, k.stdout()


def load(spawn, state, mem, resume=True, **extra):
    k = spawn("--level", "info")
    body = {"snapshot_path": str(state), "mem_backend": {"backend_type": "File", "backend_path": str(mem)},
            "resume_vm": resume, **extra}
    return k, k.req("PUT", "/snapshot/load", body)


def assert_carries_on(k, before, stop):
    """The console before the snapshot and the restored guest's read as one
    uninterrupted run (a line the pause cut in two joins up), and the guest
    finished its work (its memory checks passed)."""
    k.wait_console("counter: done")
    got = [c for c, _ in counts(before + k.stdout())]
    assert got == list(range(1, stop + 1)), got
    assert k.wait_exit() == 0  # DONE without a test device: the guest resets
    assert "ASSERT" not in k.stdout() + k.stderr()


@pytest.fixture
def snap(spawn):
    """A counter guest snapshotted at a count of 5 or more, the snapshot's kite killed;
    (state, mem, console until the snapshot)."""
    k = boot(spawn, stop=30)
    k.wait_console("count 5 ")
    state, mem, text = snapshot(k, "s")
    k.kill()
    return state, mem, text


def test_restore_carries_on_where_it_stopped(spawn, snap):
    state, mem, text = snap
    k, r = load(spawn, state, mem)
    assert r.status == 204, r
    assert k.req("GET", "/").json["state"] == "Running"
    assert_carries_on(k, text, 30)


def test_restore_twice_from_one_snapshot(spawn, snap):
    state, mem, text = snap
    for _ in range(2):
        k, r = load(spawn, state, mem)
        assert r.status == 204, r
        assert_carries_on(k, text, 30)


def test_memory_file_is_sparse_and_not_written_by_the_guest(spawn, snap):
    state, mem, text = snap
    st = os.stat(mem)
    assert st.st_size == 64 << 20
    assert st.st_blocks * 512 < 8 << 20  # zero pages are holes
    before = open(mem, "rb").read()
    k, r = load(spawn, state, mem)
    assert r.status == 204, r
    assert_carries_on(k, text, 30)
    # MAP_PRIVATE: the guest wrote 25 more pages, none of them reached the file.
    assert open(mem, "rb").read() == before


HANDLER = GUESTS.parent / "tools" / "uffd-handler"


def test_uffd_backend_serves_pages_through_the_handler(spawn, snap, workdir):
    """Firecracker's Uffd protocol: kite registers the guest's memory with a
    userfaultfd and hands it, with the mappings, to a handler process, which then
    fills every page the guest touches from the memory file."""
    state, mem, text = snap
    sock = workdir / "uffd.sock"
    h = subprocess.Popen([HANDLER, sock, mem], stdout=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: sock.exists(), what="the handler's socket")
        k = spawn("--level", "info")
        r = k.req("PUT", "/snapshot/load", {"snapshot_path": str(state), "resume_vm": True,
                                            "mem_backend": {"backend_type": "Uffd", "backend_path": str(sock)}})
        assert r.status == 204, r
        assert_carries_on(k, text, 30)
        h.terminate()  # the handler serves until told to stop
        out = h.communicate(timeout=10)[0]
    finally:
        h.kill()
    assert "uffd-handler: ready, 1 regions" in out, out
    served = int(re.search(r"served (\d+) pages", out).group(1))
    assert 5 < served < 2000, out  # what the guest touched, not all 16384 pages


def test_uffd_backend_without_a_handler_refused(spawn, snap, workdir):
    state, mem, _ = snap
    refused(spawn, state, mem, "connect to the Uffd handler: No such file or directory",
            mem_backend={"backend_type": "Uffd", "backend_path": str(workdir / "none.sock")})


def test_paused_load_waits_for_resume(spawn, snap):
    state, mem, text = snap
    k, r = load(spawn, state, mem, resume=False)
    assert r.status == 204, r
    assert k.req("GET", "/").json["state"] == "Paused"
    assert counts(k.stdout()) == []
    assert k.req("PATCH", "/vm", {"state": "Resumed"}).status == 204
    assert_carries_on(k, text, 30)


# PVM runs guest code without hardware virtualization: RDTSC gives the host's TSC
# whatever offset KVM keeps, so there the guest's TSC follows the host's across a
# restore (the guest still checks it never goes back). Elsewhere the saved TSC MSR
# sets the offset; the lab checks the same on SVM (tests/lab/test_lab_snapshot.py).
PVM = os.path.exists("/sys/module/kvm_pvm")


@pytest.mark.skipif(PVM, reason="PVM: the guest's RDTSC reads the host's TSC, no offset applies")
def test_tsc_does_not_jump_by_the_time_between(spawn):
    k = boot(spawn, stop=40)
    k.wait_console("count 8 ")
    state, mem, text = snapshot(k, "s")
    before = counts(text)
    k.kill()
    gaps = sorted(b[1] - a[1] for a, b in zip(before, before[1:]))
    tick = gaps[len(gaps) // 2]
    time.sleep(1.5)  # the time between: worth ~75 ticks of the guest's 20 ms timer
    k, r = load(spawn, state, mem)
    assert r.status == 204, r
    assert_carries_on(k, text, 40)
    joint = counts(text + k.stdout())
    last, first = joint[len(before) - 1], joint[len(before)]
    # The TSC went on from where it stood (never back: the guest asserts that).
    assert 0 < first[1] - last[1] < 5 * tick, (last, first, tick)


def test_diff_snapshot_on_top_of_a_full_one(spawn, kite):
    k = boot(spawn, stop=60, track=True)
    k.wait_console("count 5 ")
    full_state, full_mem, _ = snapshot(k, "full")
    assert k.req("PATCH", "/vm", {"state": "Resumed"}).status == 204
    k.wait_console("count 20 ")
    diff_state, diff_mem, text = snapshot(k, "diff", diff=True)
    k.kill()
    # The diff holds what changed since the full snapshot: a few dozen pages.
    diff_pages = os.stat(diff_mem).st_blocks * 512 // 4096
    assert 0 < diff_pages < 200, diff_pages
    assert os.stat(diff_mem).st_size == os.stat(full_mem).st_size
    folded = k.dir / "folded.mem"
    shutil.copyfile(full_mem, folded)
    p = subprocess.run([kite, "snapshot-fold", str(folded), str(diff_mem)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    k2, r = load(spawn, diff_state, folded)
    assert r.status == 204, r
    assert_carries_on(k2, text, 60)
    # The full snapshot itself is untouched and still loads.
    k3, r = load(spawn, full_state, full_mem, resume=False)
    assert r.status == 204, r


def test_diff_needs_dirty_page_tracking(spawn):
    k = boot(spawn, stop=0)
    k.wait_console("count 2 ")
    assert k.req("PATCH", "/vm", {"state": "Paused"}).status == 204
    r = k.req("PUT", "/snapshot/create", {"snapshot_path": str(k.dir / "s"), "mem_file_path": str(k.dir / "m"),
                                          "snapshot_type": "Diff"})
    assert r.status == 400 and "track_dirty_pages" in r.fault, r
    assert not (k.dir / "s").exists() and not (k.dir / "m").exists()


def test_create_failure_leaves_the_vm_running_on(spawn):
    k = boot(spawn, stop=0)
    k.wait_console("count 2 ")
    assert k.req("PATCH", "/vm", {"state": "Paused"}).status == 204
    r = k.req("PUT", "/snapshot/create", {"snapshot_path": str(k.dir / "no/such/dir/s"),
                                          "mem_file_path": str(k.dir / "m")})
    assert r.status == 400 and "no/such/dir/s" in r.fault, r
    n = counts(k.stdout())[-1][0]
    assert k.req("PATCH", "/vm", {"state": "Resumed"}).status == 204
    k.wait_console(f"count {n + 2} ")


# ---------------------------------------------------------------- refusals ----

def crc64(data):
    poly, crc = 0xC96C5795D7870F42, 0xFFFFFFFFFFFFFFFF
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table.append(c)
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFFFFFFFFFF


def sections(buf):
    """(tag, inst, payload offset, length) of each section of a state file."""
    n = struct.unpack_from("<I", buf, 16)[0]
    off, out = 32, []
    for _ in range(n):
        tag, inst, ln = buf[off:off + 4].decode(), *struct.unpack_from("<IQ", buf, off + 4)
        out.append((tag, inst, off + 16, ln))
        off += 16 + ln
    return out


def reseal(buf):
    buf[-8:] = struct.pack("<Q", crc64(bytes(buf[:-8])))


def test_crc_matches_kite():
    assert crc64(b"123456789") == 0x995DC9BBDF1939FA


def refused(spawn, state, mem, needle, **extra):
    k = spawn("--level", "info")
    body = {"snapshot_path": str(state), "mem_backend": {"backend_type": "File", "backend_path": str(mem)},
            "resume_vm": True, **extra}
    r = k.req("PUT", "/snapshot/load", body)
    assert r.status == 400, r
    assert needle in r.fault, r.fault
    assert "\n" not in r.fault
    assert k.req("GET", "/").json["state"] == "Not started"
    return k


def test_truncated_state_file_refused_then_a_good_one_loads(spawn, snap):
    state, mem, text = snap
    bad = state.parent / "truncated"
    bad.write_bytes(state.read_bytes()[:-100])
    k = refused(spawn, bad, mem, "truncated")
    # Nothing of the failed load stuck: the same process loads the good snapshot.
    r = k.req("PUT", "/snapshot/load", {"snapshot_path": str(state), "mem_file_path": str(mem),
                                        "resume_vm": True})
    assert r.status == 204, r
    assert_carries_on(k, text, 30)


def test_flipped_byte_refused(spawn, snap):
    state, mem, _ = snap
    buf = bytearray(state.read_bytes())
    buf[len(buf) // 2] ^= 0x01
    bad = state.parent / "flipped"
    bad.write_bytes(buf)
    refused(spawn, bad, mem, "checksum mismatch")


def test_newer_version_refused(spawn, snap):
    state, mem, _ = snap
    buf = bytearray(state.read_bytes())
    buf[8:12] = struct.pack("<I", 2)
    reseal(buf)
    bad = state.parent / "v2"
    bad.write_bytes(buf)
    refused(spawn, bad, mem, "version 2; this kite reads version 1")


def test_not_a_state_file_refused(spawn, snap):
    _, mem, _ = snap
    refused(spawn, COUNTER, mem, "not a kite state file")
    refused(spawn, COUNTER.parent / "missing.state", mem, "No such file")


def test_memory_file_of_another_size_refused(spawn, snap):
    state, mem, _ = snap
    short = state.parent / "short.mem"
    with open(short, "wb") as f:
        f.truncate(32 << 20)
    refused(spawn, state, short, "33554432 bytes; the snapshot's guest has 67108864")
    refused(spawn, state, state.parent / "none.mem", "No such file")


def test_cpuid_feature_the_host_lacks_refused(spawn, snap):
    """A guest that saw a feature this host cannot offer: leaf 7.0 EBX with a bit
    set that this host's guests do not get."""
    state, mem, _ = snap
    buf = bytearray(state.read_bytes())
    for tag, inst, off, ln in sections(buf):
        if tag != "CPID":
            continue
        for e in range(off, off + ln, 40):  # struct kvm_cpuid_entry2
            fn, idx, flags, eax, ebx, ecx, edx = struct.unpack_from("<7I", buf, e)
            if fn == 7 and idx == 0:
                bit = next(b for b in range(31, -1, -1) if not ebx >> b & 1)
                struct.pack_into("<I", buf, e + 16, ebx | 1 << bit)
    reseal(buf)
    bad = state.parent / "cpuid"
    bad.write_bytes(buf)
    refused(spawn, bad, mem, "this host cannot offer CPUID 7.0.EBX bit")


def test_tsc_frequency_the_host_cannot_give_refused(spawn, snap):
    state, mem, _ = snap
    buf = bytearray(state.read_bytes())
    for tag, inst, off, ln in sections(buf):
        if tag == "TSCK":
            struct.pack_into("<I", buf, off, 1)  # a 1 kHz TSC
    reseal(buf)
    bad = state.parent / "tsc"
    bad.write_bytes(buf)
    k, r = load(spawn, bad, mem)
    assert r.status == 400, r
    assert "TSC" in r.fault and "1 kHz" in r.fault, r.fault


def test_load_request_refusals(spawn, snap):
    state, mem, _ = snap
    k = spawn()
    for body, needle in [
        ({"snapshot_path": str(state)}, "exactly one of mem_backend and mem_file_path"),
        ({"snapshot_path": str(state), "mem_file_path": str(mem),
          "mem_backend": {"backend_type": "File", "backend_path": str(mem)}}, "exactly one"),
        ({"snapshot_path": str(state), "mem_file_path": str(mem), "huge_pages": "2M"}, "huge_pages 2M"),
        ({"snapshot_path": str(state), "mem_file_path": str(mem),
          "network_overrides": [{"iface_id": "eth9", "host_dev_name": "tap9"}]}, "eth9"),
        ({"snapshot_path": str(state), "mem_file_path": str(mem), "vsock_override": {"uds_path": "/tmp/v"}},
         "no vsock device"),
    ]:
        r = k.req("PUT", "/snapshot/load", body)
        assert r.status == 400 and needle in r.fault, (body, r)
        assert k.req("GET", "/").json["state"] == "Not started"
    # Once a boot resource is configured, a load is refused.
    assert k.req("PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": 64}).status == 204
    r = k.req("PUT", "/snapshot/load", {"snapshot_path": str(state), "mem_file_path": str(mem)})
    assert r.status == 400 and "only allowed before" in r.fault, r


# ------------------------------------------------------------ snapshot-fold ----

def test_fold_refusals(kite, tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for f, size in ((a, 1 << 20), (b, 1 << 20), (c, 2 << 20)):
        with open(f, "wb") as fh:
            fh.truncate(size)

    def fold(*args):
        return subprocess.run([kite, "snapshot-fold", *map(str, args)], capture_output=True, text=True)
    for args, code, needle in [((), 2, "two memory files"), ((a,), 2, "two memory files"),
                               ((a, tmp_path / "none"), 4, "none"), ((a, c), 4, "not the same guest"),
                               ((a, a), 2, "the same file")]:
        p = fold(*args)
        assert p.returncode == code, (args, p.stderr)
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("kite: error:") and needle in lines[0], p.stderr


def test_fold_copies_only_the_diffs_pages(kite, tmp_path):
    base, diff = tmp_path / "base", tmp_path / "diff"
    base.write_bytes(b"\x11" * (64 << 10))
    with open(diff, "wb") as f:
        f.truncate(64 << 10)
        f.seek(8 << 10)
        f.write(b"\x22" * 4096)          # page 2 written
        f.seek(20 << 10)
        f.write(b"\x00" * 4096)          # page 5 written back to zero: still a page of the diff
    p = subprocess.run([kite, "snapshot-fold", str(base), str(diff)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    out = base.read_bytes()
    assert out[8 << 10:12 << 10] == b"\x22" * 4096
    assert out[20 << 10:24 << 10] == b"\x00" * 4096
    assert out[:8 << 10] == b"\x11" * (8 << 10) and out[12 << 10:20 << 10] == b"\x11" * (8 << 10)
    assert out[24 << 10:] == b"\x11" * (40 << 10)

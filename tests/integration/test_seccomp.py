"""seccomp: after set-up a forbidden system call (the test device's hook makes
kite call getppid) stops kite with one line and exit 148; --no-seccomp and
--seccomp-filter FILE change that; bad filter options are usage errors."""
import struct
import subprocess

import pytest

from kiteapi import workdir, spawn  # noqa: F401 (fixtures)
from kitetest import GUESTS, needs_kvm, run

pytestmark = needs_kvm

GETPPID = 110  # x86-64
ALLOWED_LINE = "kite: the forbidden system call was allowed (no seccomp filter)"


def guest(kite, *args):
    return run([kite, "run", "--kernel", GUESTS / "forbidden_syscall.elf", "--test-device", "--level", "info",
                *args])


def bpf(*insns):
    return b"".join(struct.pack("<HBBI", *i) for i in insns)


LD_NR = (0x20, 0, 0, 0)                 # BPF_LD|BPF_W|BPF_ABS, seccomp_data.nr
RET_ALLOW = (0x06, 0, 0, 0x7fff0000)    # BPF_RET|BPF_K, SECCOMP_RET_ALLOW
RET_TRAP = (0x06, 0, 0, 0x00030000)     # SECCOMP_RET_TRAP


def test_forbidden_syscall_after_setup_stops_kite(kite, guests):
    r = guest(kite)
    assert r.returncode == 148, r.stderr
    lines = [l for l in r.stderr.splitlines() if l.startswith("kite: error:")]
    assert lines == [f"kite: error: seccomp: forbidden system call {GETPPID} "
                     "(see `ausyscall` for its name); kite stops"]
    assert "test guest done" not in r.stderr


def test_no_seccomp_lets_it_through(kite, guests):
    r = guest(kite, "--no-seccomp")
    assert r.returncode == 0, r.stderr
    assert ALLOWED_LINE in r.stderr
    assert "test guest done" in r.stderr


def test_filter_file_replaces_the_default(kite, guests, tmp_path):
    allow_all = tmp_path / "allow.bpf"
    allow_all.write_bytes(bpf(RET_ALLOW))
    r = guest(kite, "--seccomp-filter", allow_all)
    assert r.returncode == 0, r.stderr
    assert ALLOWED_LINE in r.stderr

    trap_getppid = tmp_path / "trap.bpf"
    trap_getppid.write_bytes(bpf(LD_NR, (0x15, 0, 1, GETPPID), RET_TRAP, RET_ALLOW))  # JEQ nr, GETPPID
    r = guest(kite, "--seccomp-filter", trap_getppid)
    assert r.returncode == 148
    assert f"forbidden system call {GETPPID}" in r.stderr


def test_a_normal_guest_runs_clean_under_the_filter(kite, guests):
    r = run([kite, "run", "--kernel", GUESTS / "exit_counts.elf", "--mem", "64", "--test-device",
             "--level", "info"])
    assert r.returncode == 0, r.stderr
    assert "test guest done" in r.stderr


@pytest.mark.parametrize("content, words", [
    (None, "No such file"),
    (b"", "expected a BPF program"),
    (b"1234567", "expected a BPF program"),
    (b"\0" * 8 * 4097, "expected a BPF program"),
], ids=["missing", "empty", "not-8-byte-insns", "too-long"])
def test_bad_filter_files(kite, tmp_path, content, words):
    f = tmp_path / "f.bpf"
    if content is not None:
        f.write_bytes(content)
    r = run([kite, "run", "--kernel", GUESTS / "hello.elf", "--seccomp-filter", f])
    assert r.returncode == 2
    assert len(r.stderr.splitlines()) == 1 and words in r.stderr and "--seccomp-filter" in r.stderr


def test_a_filter_the_kernel_refuses(kite, guests, tmp_path):
    f = tmp_path / "bad.bpf"
    f.write_bytes(bpf((0xff, 0, 0, 0)))  # not a BPF instruction
    r = guest(kite, "--seccomp-filter", f)
    assert r.returncode == 1
    assert "the kernel refused it" in r.stderr


def test_both_options_are_a_usage_error(kite, tmp_path):
    f = tmp_path / "allow.bpf"
    f.write_bytes(bpf(RET_ALLOW))
    r = run([kite, "run", "--kernel", GUESTS / "hello.elf", "--no-seccomp", "--seccomp-filter", f])
    assert r.returncode == 2 and "at most one" in r.stderr


def test_firecracker_flags(spawn):
    k = spawn("--no-seccomp")
    assert k.req("GET", "/").status == 200
    r = subprocess.run([str(k.cmd[0]), "--seccomp-filter", "/nonexistent", "--api-sock", "/tmp/x.sock"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and "--seccomp-filter '/nonexistent'" in r.stderr

"""CPU placement: --vcpu-affinity pins each vCPU thread to a host CPU, and
--vcpu-sched sets its scheduling policy and nice value or priority; bad values
are usage errors naming what was wrong."""
import os
import subprocess
import time

import pytest

from kiteapi import wait_for
from kitetest import GUESTS, error_line, needs_kvm, run

pytestmark = needs_kvm


def vcpu_tasks(pid):
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
        except OSError:
            continue
        if name.startswith("kite-vcpu"):
            out[name] = tid
    return out


def task_info(pid, tid):
    with open(f"/proc/{pid}/task/{tid}/status") as f:
        allowed = [l.split()[1] for l in f if l.startswith("Cpus_allowed_list:")][0]
    with open(f"/proc/{pid}/task/{tid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # after "(comm)": field 3 is fields[0]; nice is field 19, policy field 41
    return allowed, int(fields[16]), int(fields[38])


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two host CPUs")
def test_vcpus_pinned_and_scheduled(kite, guests):
    cpus = sorted(os.sched_getaffinity(0))
    p = subprocess.Popen([str(kite), "run", "--kernel", str(GUESTS / "idle.elf"), "--cpus", "2",
                          "--vcpu-affinity", f"{cpus[1]},{cpus[0]}", "--vcpu-sched", "batch:7", "--serial", "none"],
                         stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: len(vcpu_tasks(p.pid)) == 2, what="two vCPU threads")
        t = vcpu_tasks(p.pid)
        a0, nice0, pol0 = task_info(p.pid, t["kite-vcpu0"])
        a1, nice1, pol1 = task_info(p.pid, t["kite-vcpu1"])
        assert (a0, a1) == (str(cpus[1]), str(cpus[0]))
        assert pol0 == pol1 == 3  # SCHED_BATCH
        assert nice0 == nice1 == 7
        # the other threads keep the process's own placement
        with open(f"/proc/{p.pid}/status") as f:
            assert [l for l in f if l.startswith("Cpus_allowed_list:")][0].split()[1] != str(cpus[1])
    finally:
        p.kill()
        p.wait()


def test_default_placement_untouched(kite, guests):
    p = subprocess.Popen([str(kite), "run", "--kernel", str(GUESTS / "idle.elf"), "--serial", "none"],
                         stdin=subprocess.DEVNULL)
    try:
        wait_for(lambda: len(vcpu_tasks(p.pid)) == 1, what="the vCPU thread")
        allowed, nice, pol = task_info(p.pid, vcpu_tasks(p.pid)["kite-vcpu0"])
        assert pol == 0 and nice == 0
    finally:
        p.kill()
        p.wait()


@pytest.mark.parametrize("args, words", [
    (["--vcpu-affinity", "4096"], "--vcpu-affinity '4096': '4096' is not a CPU number"),
    (["--vcpu-affinity", "1000"], "host CPU 1000 does not exist or is not available to kite"),
    (["--vcpu-affinity", "0,"], "a trailing comma"),
    (["--vcpu-affinity", "x"], "'x' is not a CPU number"),
    (["--vcpu-sched", "fifo"], "fifo needs a priority"),
    (["--vcpu-sched", "rr:100"], "rr takes a priority 1-99"),
    (["--vcpu-sched", "other:30"], "other takes a nice value -20..19"),
    (["--vcpu-sched", "idle:1"], "idle takes no value"),
    (["--vcpu-sched", "deadline"], "expected other[:NICE], batch[:NICE], idle, fifo:PRIO or rr:PRIO"),
])
def test_placement_usage_errors(kite, args, words):
    r = run([kite, "run", "--kernel", GUESTS / "idle.elf", *args])
    assert r.returncode == 2
    assert words in error_line(r)

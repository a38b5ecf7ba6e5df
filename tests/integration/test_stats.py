"""Trap accounting: exits counted exactly by reason and device (tiny guests with
known exits), GET /stats on a running VM, `kite stat` in its three formats and
its errors. Definitions: docs/stats.md."""
import json
import re
import subprocess

import pytest

from kiteapi import wait_for, workdir, spawn  # noqa: F401 (fixtures)
from kitetest import GUESTS, needs_kvm, run

pytestmark = needs_kvm

# tests/guests/exit_counts.c
N_SERIAL, N_UNCLAIMED_PIO, N_BAR_WINDOW, N_UNMAPPED, N_HLT = 37, 23, 19, 11, 13


def device(stats, bus, name):
    found = [d for d in stats["devices"] if d["bus"] == bus and d["name"] == name]
    assert len(found) == 1, (bus, name, stats["devices"])
    return found[0]


def run_counts(kite, tmp_path, *extra):
    out = tmp_path / "stats.json"
    r = run([kite, "run", "--kernel", GUESTS / "exit_counts.elf", "--mem", "64", "--test-device",
             "--stats-file", out, *extra])
    assert r.returncode == 0, r.stderr
    return json.loads(out.read_text())


def test_exit_counts_match_exactly(kite, guests, tmp_path):
    s = run_counts(kite, tmp_path)
    testdev = device(s, "pio", "testdev")["exits"]
    assert testdev >= 1  # the DONE ucall
    assert device(s, "pio", "serial-com1")["exits"] == N_SERIAL
    assert device(s, "pio", "unclaimed")["exits"] == N_UNCLAIMED_PIO
    assert device(s, "mmio", "pci-bars")["exits"] == N_BAR_WINDOW
    assert device(s, "mmio", "unclaimed")["exits"] == N_UNMAPPED
    v = s["vcpus"][0]
    assert v["userspace_exits"] == {"io": N_SERIAL + N_UNCLAIMED_PIO + testdev, "mmio": N_BAR_WINDOW + N_UNMAPPED}
    assert s["totals"]["userspace_exits"] == N_SERIAL + N_UNCLAIMED_PIO + testdev + N_BAR_WINDOW + N_UNMAPPED
    # KVM's own count of the HLTs it handled in the kernel
    assert v["kvm"]["halt_exits"] == N_HLT
    assert s["totals"]["exits"] >= s["totals"]["userspace_exits"] + N_HLT
    # every exit kite handled is in the latency histogram, and timed
    assert sum(b["count"] for b in v["exit_latency_hist"]) == s["totals"]["userspace_exits"]
    assert v["exit_latency_hist"][-1]["le_ns"] is None
    assert v["exit_handling_ns"]["io"] > 0
    assert device(s, "pio", "serial-com1")["ns"] > 0
    t = v["time"]
    assert t["exit_handling_ns"] == sum(v["exit_handling_ns"].values())
    assert t["in_kvm_run_ns"] >= t["guest_ns"] + t["halted_ns"] - 1


def test_no_exit_stats_keeps_counts_drops_timing(kite, guests, tmp_path):
    s = run_counts(kite, tmp_path, "--no-exit-stats")
    assert device(s, "pio", "serial-com1")["exits"] == N_SERIAL
    assert device(s, "pio", "serial-com1")["ns"] == 0
    v = s["vcpus"][0]
    assert v["time"]["exit_handling_ns"] == 0
    assert v["time"]["in_kvm_run_ns"] == 0


def test_stats_file_that_cannot_be_written_warns(kite, guests, tmp_path):
    r = run([kite, "run", "--kernel", GUESTS / "exit_counts.elf", "--mem", "64", "--test-device",
             "--stats-file", tmp_path / "no-such-dir" / "s.json"])
    assert r.returncode == 0
    assert "cannot write the statistics to" in r.stderr


@pytest.fixture
def idle_vm(spawn):
    k = spawn()
    assert k.req("PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": 32}).status == 204
    assert k.req("PUT", "/boot-source", {"kernel_image_path": str(GUESTS / "idle.elf")}).status == 204
    assert k.req("GET", "/stats").status == 400  # nothing to account for before boot
    assert k.req("PUT", "/actions", {"action_type": "InstanceStart"}).status == 204
    k.wait_console("idle guest up")
    return k


def test_get_stats_of_an_idle_guest(idle_vm):
    # the sampler's window (1 s of 100 ms samples) must have slid past the boot
    wait_for(lambda: idle_vm.req("GET", "/stats").json["uptime_us"] > 1.3e6, what="1.3 s of uptime")
    s = idle_vm.req("GET", "/stats").json
    assert set(s) >= {"uptime_us", "totals", "vcpus", "devices", "kvm_vm", "analytics"}
    v = s["vcpus"][0]
    # "idle guest up\n" is 14 bytes through COM1's data register
    assert device(s, "pio", "serial-com1")["exits"] >= 14
    assert v["time"]["halted_frac"] > 0.9  # the guest sits in HLT
    an = s["analytics"]
    assert an["phase"] == "idle"
    assert an["posteriors"]["idle"] > 0.5
    assert abs(sum(an["posteriors"].values()) - 1) < 1e-9
    assert an["entropy_bits"] == 0  # no exits at all in the window
    assert an["illusion_cost"] < 0.01


def stat(kite, *args, timeout=10):
    return subprocess.run([str(kite), "stat", *map(str, args)], capture_output=True, text=True, timeout=timeout)


def test_kite_stat_text_json_prometheus(kite, idle_vm):
    sock = idle_vm.sock
    r = stat(kite, "--api-sock", sock)
    assert r.returncode == 0, r.stderr
    assert re.search(r"^VM .* phase \S+ .*entropy", r.stdout, re.M)
    assert re.search(r"^\s+pio\s+serial-com1\s+\d+", r.stdout, re.M)

    r = stat(kite, "--api-sock", sock, "--format", "json", "--interval", "0.2", "--count", "2")
    lines = r.stdout.splitlines()
    assert len(lines) == 2
    assert all(json.loads(l)["socket"] == str(sock) for l in lines)

    r = stat(kite, "--api-sock", sock, "--format", "prometheus")
    assert r.returncode == 0
    for line in r.stdout.splitlines():  # the exposition format: name{labels} value
        assert re.fullmatch(r'[a-z_][a-z0-9_]*(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? -?[0-9.e+-]+', line), line
    assert re.search(r'^kite_device_exits_total\{vm="[^"]+",bus="pio",device="serial-com1"\} \d+$', r.stdout, re.M)
    assert 'le="+Inf"' in r.stdout


def test_kite_stat_several_vms_gives_fairness(kite, idle_vm):
    r = stat(kite, "--api-sock", idle_vm.sock, "--api-sock", idle_vm.sock)
    assert r.returncode == 0
    m = re.search(r"fairness \(Jain, useful guest time, 2 VMs\): ([0-9.]+)", r.stdout)
    assert m and float(m.group(1)) == pytest.approx(1.0)


@pytest.mark.parametrize("args, words", [
    ([], "--api-sock is required"),
    (["--api-sock", "x", "--format", "xml"], "--format 'xml'"),
    (["--api-sock", "x", "--interval", "0"], "--interval '0'"),
    (["--api-sock", "x", "--count", "-3"], "--count '-3'"),
    (["--api-sock", "x", "--bogus"], "unknown option '--bogus'"),
])
def test_kite_stat_usage_errors(kite, args, words):
    r = stat(kite, *args)
    assert r.returncode == 2
    assert len(r.stderr.splitlines()) == 1 and words in r.stderr


def test_kite_stat_without_a_vm(kite, tmp_path):
    r = stat(kite, "--api-sock", tmp_path / "nobody.sock")
    assert r.returncode == 1
    assert r.stderr.startswith("kite stat: error: ") and "nobody.sock" in r.stderr
    assert len(r.stderr.splitlines()) == 1


def test_memory_backing_and_ksm_reported(kite, guests, tmp_path):
    out = tmp_path / "s.json"
    r = run([kite, "run", "--kernel", GUESTS / "exit_counts.elf", "--mem", "64", "--test-device",
             "--huge-pages", "thp", "--ksm", "--stats-file", out])
    assert r.returncode == 0, r.stderr
    m = json.loads(out.read_text())["memory"]
    assert m["backing"] == "thp" and m["ksm"] is True and m["guest_mib"] == 64
    assert m["vmm_rss_kib"] > 0
    s = run_counts(kite, tmp_path)
    assert s["memory"]["backing"] == "anonymous" and s["memory"]["ksm"] is False

#!/usr/bin/python3
"""Snapshot creation and restore latency on this host's /dev/kvm: kite vs QEMU.

Both VMMs run the same tiny guest (build/bench/guests/idle.elf: prints
"bench-idle: running" on COM1, then halts for ever), 1 vCPU, with 128 MiB and
1 GiB of RAM.

kite:  pause (PATCH /vm), PUT /snapshot/create (Full) timed to its 204; then a
       fresh kite per run: PUT /snapshot/load with resume_vm timed from the request
       to its 204, when the vCPUs have been let into the guest ("restore latency",
       as Firecracker reports it: load request to guest running).
QEMU:  the closest equivalent: `stop`, then `migrate` to "exec:cat > FILE" timed
       until query-migrate says completed; restore: a fresh QEMU started with
       `-incoming defer`, `migrate-incoming "exec:cat FILE"`, then (the state arrives
       paused, as it was saved) `cont`, timed until the RESUME event.

Usage: bench/snapshot.py [-n RUNS] [--sizes 128,1024] [--no-qemu]
Prints a table: median and min over the runs, per VMM and size. Not a test.
"""
import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
GUEST = os.path.join(REPO, "build", "bench", "guests", "idle.elf")


def die(msg):
    sys.exit(f"snapshot.py: {msg}")


def wait_file(path, text=None, timeout=20):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if os.path.exists(path) and (text is None or text in open(path, errors="replace").read()):
            return
        time.sleep(0.002)
    die(f"timed out waiting for {path}" + (f" to say {text!r}" if text else ""))


def http(sock, method, path, body=None):
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock)
    data = json.dumps(body).encode() if body is not None else b""
    req = f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(data)}\r\n"
    req += "Content-Type: application/json\r\n\r\n" if data else "\r\n"
    t0 = time.perf_counter()
    s.sendall(req.encode() + data)
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(65536)
    t1 = time.perf_counter()
    head, rest = buf.split(b"\r\n\r\n", 1)
    status = int(head.split()[1])
    n = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            n = int(line.split(b":")[1])
    while len(rest) < n:
        rest += s.recv(65536)
    s.close()
    return status, rest.decode(errors="replace"), t1 - t0


def kite_proc(kite, d, name):
    sock = os.path.join(d, name + ".sock")
    out = open(os.path.join(d, name + ".out"), "w")
    p = subprocess.Popen([kite, "--api-sock", sock, "--level", "warning"], stdout=out, stderr=subprocess.STDOUT)
    wait_file(sock)
    return p, sock


def kite_run(kite, d, mib, runs):
    p, sock = kite_proc(kite, d, "src")
    ok = lambda r: r[0] == 204 or die(f"kite: {r}")  # noqa: E731
    ok(http(sock, "PUT", "/boot-source", {"kernel_image_path": GUEST}))
    ok(http(sock, "PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": mib}))
    ok(http(sock, "PUT", "/actions", {"action_type": "InstanceStart"}))
    wait_file(os.path.join(d, "src.out"), "bench-idle: running")
    ok(http(sock, "PATCH", "/vm", {"state": "Paused"}))
    create = []
    for i in range(runs):
        r = http(sock, "PUT", "/snapshot/create", {"snapshot_path": f"{d}/k.state", "mem_file_path": f"{d}/k.mem"})
        ok(r)
        create.append(r[2])
    p.kill()
    p.wait()
    restore = []
    for i in range(runs):
        q, qs = kite_proc(kite, d, f"r{i}")
        r = http(qs, "PUT", "/snapshot/load", {"snapshot_path": f"{d}/k.state", "resume_vm": True,
                                                "mem_backend": {"backend_type": "File", "backend_path": f"{d}/k.mem"}})
        ok(r)
        restore.append(r[2])
        st = http(qs, "GET", "/")
        if '"Running"' not in st[1]:
            die(f"kite: restored VM not running: {st}")
        q.kill()
        q.wait()
    size = os.stat(f"{d}/k.mem").st_blocks * 512
    return create, restore, size


class Qmp:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX)
        self.s.connect(path)
        self.f = self.s.makefile("rwb", buffering=0)
        self.events = []  # events that arrived while a command waited for its answer
        self.f.readline()  # greeting
        self.cmd("qmp_capabilities")

    def cmd(self, name, **args):
        self.f.write(json.dumps({"execute": name, "arguments": args}).encode() + b"\n")
        while True:
            m = json.loads(self.f.readline())
            if "event" in m:
                self.events.append(m)
            elif "return" in m or "error" in m:
                if "error" in m:
                    die(f"QMP {name}: {m['error']}")
                return m["return"]

    def event(self, name, timeout=30):
        self.s.settimeout(timeout)
        while True:
            m = self.events.pop(0) if self.events else json.loads(self.f.readline())
            if m.get("event") == name:
                return m


def qemu_proc(qemu, d, name, mib, extra=()):
    qmp = os.path.join(d, name + ".qmp")
    out = os.path.join(d, name + ".out")
    p = subprocess.Popen([qemu, "-M", "microvm", "-accel", "kvm", "-nodefaults", "-no-user-config", "-display",
                          "none", "-m", str(mib), "-smp", "1", "-kernel", GUEST, "-serial", f"file:{out}",
                          "-qmp", f"unix:{qmp},server,nowait", *extra],
                         stdout=subprocess.DEVNULL, stderr=open(os.path.join(d, name + ".err"), "w"))
    wait_file(qmp)
    time.sleep(0.01)
    return p, Qmp(qmp), out


def qemu_run(qemu, d, mib, runs):
    p, q, out = qemu_proc(qemu, d, "qsrc", mib)
    wait_file(out, "bench-idle: running")
    q.cmd("stop")
    create = []
    for i in range(runs):
        if i:  # a completed migration leaves QEMU in postmigrate: run and stop it again
            q.cmd("cont")
            q.cmd("stop")
        t0 = time.perf_counter()
        q.cmd("migrate", uri=f"exec:cat > {d}/q.state")
        while q.cmd("query-migrate").get("status") not in ("completed", "failed"):
            time.sleep(0.0005)
        create.append(time.perf_counter() - t0)
    p.kill()
    p.wait()
    restore = []
    for i in range(runs):
        r, rq, _ = qemu_proc(qemu, d, f"qr{i}", mib, ["-incoming", "defer"])
        t0 = time.perf_counter()
        rq.cmd("migrate-incoming", uri=f"exec:cat {d}/q.state")
        # The source was paused, so the state arrives paused: wait for it, then run it.
        while rq.cmd("query-status")["status"] == "inmigrate":
            time.sleep(0.0005)
        rq.cmd("cont")
        rq.event("RESUME")
        restore.append(time.perf_counter() - t0)
        r.kill()
        r.wait()
    return create, restore, os.stat(f"{d}/q.state").st_size


def ms(xs):
    return f"{statistics.median(xs) * 1e3:8.2f} {min(xs) * 1e3:8.2f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=10, help="runs per VMM and size (default 10)")
    ap.add_argument("--sizes", default="128,1024", help="guest MiB, comma separated (default 128,1024)")
    ap.add_argument("--no-qemu", action="store_true", help="kite only")
    a = ap.parse_args()
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        die("/dev/kvm missing or not accessible: this benchmark needs KVM on this host")
    kite = os.environ.get("KITE")
    if not kite:
        subprocess.run(["make", "-s", "-C", REPO], check=True)
        kite = os.path.join(REPO, "build", "kite")
    subprocess.run(["make", "-s", "-f", os.path.join(BENCH, "Makefile")], check=True, cwd=REPO)
    qemu = os.environ.get("QEMU", "qemu-system-x86_64")
    with_qemu = not a.no_qemu and shutil.which(qemu)
    if not a.no_qemu and not with_qemu:
        print(f"snapshot.py: {qemu} not found: kite only", file=sys.stderr)
    rows = []
    for mib in map(int, a.sizes.split(",")):
        d = tempfile.mkdtemp(prefix="kite-snapbench-", dir="/tmp")
        try:
            rows.append(("kite", mib, *kite_run(kite, d, mib, a.n)))
            if with_qemu:
                rows.append(("QEMU", mib, *qemu_run(qemu, d, mib, a.n)))
        finally:
            shutil.rmtree(d, ignore_errors=True)
    print()
    print(f"Snapshot create and restore, tiny guest, 1 vCPU, {a.n} runs each (ms: median, min)")
    print(f"{'VMM':6} {'RAM':>6}  {'create med':>10} {'min':>8}  {'restore med':>11} {'min':>8}  {'file on disk':>12}")
    for vmm, mib, create, restore, size in rows:
        c, r = ms(create).split(), ms(restore).split()
        print(f"{vmm:6} {mib:>4}Mi  {c[0]:>10} {c[1]:>8}  {r[0]:>11} {r[1]:>8}  {size / 2**20:>9.1f} MiB")
    print("kite restore: PUT /snapshot/load (File backend, resume_vm) to its 204, the vCPUs let in.")
    print("QEMU restore: migrate-incoming from the file, cont, to the RESUME event. create: kite"
          " PUT /snapshot/create (Full) to 204;")
    print("QEMU migrate to a file until completed. File: kite's memory file as allocated (sparse),"
          " QEMU's stream.")


if __name__ == "__main__":
    main()

"""Live migration on this host (docs/migration.md): two kite processes, the
destination told PUT /migration/receive, the source PUT /migration/send, with
tests/guests/counter.c counting timer ticks and writing a page per tick. The
guest's progress is read from its console; the migration's from GET /migration.

Failure cases use stand-ins written here: a destination that hangs up midway, a
proxy that flips one byte of the stream, a sender of garbage. In every case the
source must run on and the destination must not run a guest."""
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import threading

import pytest

from kiteapi import KiteProc, spawn, wait_for, workdir  # noqa: F401 (fixtures)
from kitetest import GUESTS, needs_kvm

pytestmark = needs_kvm

COUNTER = GUESTS / "counter.elf"


def counts(text):
    return [int(c) for c in re.findall(r"^count (\d+) tsc", text, re.M)]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def boot(spawn, stop, prefix=()):
    k = spawn("--level", "info", *prefix)
    assert k.req("PUT", "/boot-source", {"kernel_image_path": str(COUNTER),
                                         "boot_args": f"stop={stop}"}).status == 204
    assert k.req("PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": 64}).status == 204
    assert k.req("PUT", "/actions", {"action_type": "InstanceStart"}).status == 204
    return k


def status(k):
    r = k.req("GET", "/migration")
    assert r.status == 200, r
    return r.json


def wait_state(k, *states):
    return wait_for(lambda: status(k)["state"] in states and status(k), what=f"migration state in {states}")


def assert_source_runs_on(src):
    n = counts(src.stdout())[-1]
    src.wait_console(f"count {n + 2} ")
    assert src.req("GET", "/").json["state"] == "Running"


def assert_joined(src, dst, upto=None):
    """The two consoles read as one uninterrupted run: the pause may cut a line in
    two, its start on the source's console, its end on the destination's."""
    got = counts(src.stdout() + dst.stdout())
    assert got == list(range(1, (upto or got[-1]) + 1)), got
    assert len(counts(dst.stdout())) >= 2  # the destination counted on


def wait_dst_past(src, dst, k=2):
    """Waits until the destination has counted k beyond the source's last line."""
    dst.wait_console(f"count {counts(src.stdout())[-1] + k} ")


def test_migrate_over_loopback(spawn):
    src = boot(spawn, stop=120)
    dst = spawn("--level", "info")
    src.wait_console("count 5 ")
    port = free_port()
    assert status(dst)["state"] == "none"
    r = dst.req("PUT", "/migration/receive", {"listen": f"127.0.0.1:{port}"})
    assert r.status == 204, r
    assert status(dst)["state"] == "listening" and status(dst)["role"] == "destination"
    r = src.req("PUT", "/migration/send", {"destination": f"127.0.0.1:{port}", "downtime_ms": 50})
    assert r.status == 204, r
    # The source is done once the guest runs at the destination.
    assert src.wait_exit() == 0
    assert re.search(r"migrated to 127\.0\.0\.1:\d+ \(paused [\d.]+ ms\)", src.stderr()), src.stderr()
    st = wait_state(dst, "completed")  # while the guest still counts there
    assert st["peer"] == "127.0.0.1" and st["pages"] > 0, st
    dst.wait_console("counter: done")
    assert_joined(src, dst, 120)
    assert "ASSERT" not in dst.stdout() + dst.stderr()
    assert dst.wait_exit() == 0


def test_progress_is_reported_and_downtime_measured(spawn):
    src = boot(spawn, stop=0)
    dst = spawn("--level", "info")
    src.wait_console("count 3 ")
    port = free_port()
    assert dst.req("PUT", "/migration/receive", {"listen": f"127.0.0.1:{port}"}).status == 204
    # Pre-copy keeps going until the last round fits 1 ms at the measured rate, or 3 rounds.
    assert src.req("PUT", "/migration/send", {"destination": f"127.0.0.1:{port}", "downtime_ms": 1,
                                              "max_rounds": 3}).status == 204
    assert src.wait_exit() == 0
    st = wait_state(dst, "completed", "failed")
    assert st["state"] == "completed", st
    assert st["bytes"] > st["pages"] * 4096 > 0
    wait_dst_past(src, dst, 3)
    assert_joined(src, dst)
    m = re.search(r"migration: done in ([\d.]+) ms, paused ([\d.]+) ms", src.stderr())
    assert m and 0 < float(m.group(2)) <= float(m.group(1)), src.stderr()


def hang_up_after(port, nbytes):
    """A destination that reads nbytes of the stream and closes the connection."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(1)
    got = []

    def run():
        c, _ = srv.accept()
        n = 0
        while n < nbytes:
            b = c.recv(min(65536, nbytes - n))
            if not b:
                break
            n += len(b)
        got.append(n)
        c.close()
        srv.close()
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, got


@pytest.mark.parametrize("nbytes", [10, 5000], ids=["in-the-header", "in-the-pages"])
def test_destination_gone_midway_source_runs_on(spawn, nbytes):
    src = boot(spawn, stop=0)
    src.wait_console("count 3 ")
    port = free_port()
    t, got = hang_up_after(port, nbytes)
    assert src.req("PUT", "/migration/send", {"destination": f"127.0.0.1:{port}"}).status == 204
    st = wait_state(src, "failed", "completed")
    assert st["state"] == "failed" and f"127.0.0.1:{port}" in st["error"] and "runs on here" in st["error"], st
    t.join(5)
    assert got and got[0] == nbytes
    assert_source_runs_on(src)
    # ... and can still migrate for real afterwards.
    dst = spawn("--level", "info")
    port2 = free_port()
    assert dst.req("PUT", "/migration/receive", {"listen": f"127.0.0.1:{port2}"}).status == 204
    assert src.req("PUT", "/migration/send", {"destination": f"127.0.0.1:{port2}"}).status == 204
    assert src.wait_exit() == 0
    wait_dst_past(src, dst)
    assert_joined(src, dst)


def test_stopping_the_source_mid_migration_is_prompt(spawn):
    """A destination that accepts and then reads nothing: the source blocks in its
    stream. SIGTERM still ends kite at once (the stream is cut), with 143."""
    src = boot(spawn, stop=0)
    src.wait_console("count 2 ")
    port = free_port()
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(1)
    try:
        assert src.req("PUT", "/migration/send", {"destination": f"127.0.0.1:{port}"}).status == 204
        conn, _ = srv.accept()
        wait_state(src, "sending")
        assert src.stop() == 143  # within kiteapi's 10 s deadline, not the stream's 30 s timeouts
        conn.close()
    finally:
        srv.close()


def test_nobody_listening_source_runs_on(spawn):
    src = boot(spawn, stop=0)
    src.wait_console("count 2 ")
    r = src.req("PUT", "/migration/send", {"destination": f"127.0.0.1:{free_port()}"})
    assert r.status == 204, r
    st = wait_state(src, "failed")
    assert "cannot connect" in st["error"] and "Connection refused" in st["error"], st
    assert_source_runs_on(src)


def flip_proxy(listen_port, to_port, flip_at):
    """Forwards source -> destination, flipping one bit of byte flip_at; answers flow back."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", listen_port))
    srv.listen(1)

    def run():
        a, _ = srv.accept()
        b = socket.create_connection(("127.0.0.1", to_port))
        srv.close()

        def back():
            try:
                while (d := b.recv(65536)):
                    a.sendall(d)
            except OSError:
                pass
            a.close()
        threading.Thread(target=back, daemon=True).start()
        n = 0
        try:
            while (d := a.recv(65536)):
                d = bytearray(d)
                if n <= flip_at < n + len(d):
                    d[flip_at - n] ^= 0x10
                n += len(d)
                b.sendall(d)
            b.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the destination hung up first: what a corrupt stream makes it do
    threading.Thread(target=run, daemon=True).start()


def test_corrupt_stream_rejected_source_runs_on(spawn):
    src = boot(spawn, stop=0)
    dst = spawn("--level", "info")
    src.wait_console("count 3 ")
    port, proxy = free_port(), free_port()
    assert dst.req("PUT", "/migration/receive", {"listen": f"127.0.0.1:{port}"}).status == 204
    flip_proxy(proxy, port, flip_at=20000)  # inside the first pages
    assert src.req("PUT", "/migration/send", {"destination": f"127.0.0.1:{proxy}"}).status == 204
    st = wait_state(dst, "failed")
    assert "checksum mismatch" in st["error"], st
    assert dst.req("GET", "/").json["state"] == "Not started"
    st = wait_state(src, "failed")
    assert "runs on here" in st["error"], st
    assert_source_runs_on(src)
    assert counts(dst.stdout()) == []


def raw_stream(port, data):
    """Sends data as a source would; the destination's answer byte, or b"" if it
    hung up without one (it may stop reading as soon as it sees a bad header)."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            return s.recv(1)
        except OSError:
            return b""


def crc64(data):
    poly, crc = 0xC96C5795D7870F42, 0xFFFFFFFFFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFFFFFFFFFF


def msg(t, payload):
    head = struct.pack("<IIQ", t, 0, len(payload))
    return head + payload + struct.pack("<Q", crc64(head + payload))


# A configuration the destination can build a VM from (it does, as soon as it arrives).
CONF = struct.pack("<Q", 64 << 20) + json.dumps({"boot-source": {"kernel_image_path": str(COUNTER)},
                                                  "machine-config": {"vcpu_count": 1, "mem_size_mib": 64}}).encode()


@pytest.mark.parametrize("data, needle", [
    (b"GET / HTTP/1.1\r\n\r\n", "not a kite migration stream"),
    (b"KITEMIGR" + struct.pack("<II", 2, 0), "version 2; this kite speaks version 1"),
    (b"KITEMIGR" + struct.pack("<II", 1, 0) + msg(2, b""), "does not start with the configuration"),
    (b"KITEMIGR" + struct.pack("<II", 1, 0) + msg(1, CONF) + msg(4, b""), "no VM state"),
    (b"KITEMIGR" + struct.pack("<II", 1, 0) + msg(1, CONF) + msg(2, struct.pack("<Q", 1 << 40) + bytes(4096)),
     "a page outside"),
    (b"KITEMIGR" + struct.pack("<II", 1, 0) + msg(1, CONF)[:30], "ended inside"),
    (b"KITEMIGR" + struct.pack("<II", 1, 0) + msg(1, struct.pack("<Q", 64 << 20) + b"{}"), "disagree on the size"),
    (b"KITEMIGR" + struct.pack("<II", 1, 0) + struct.pack("<IIQ", 9, 0, 1 << 62), "type 9"),
], ids=["http", "version", "order", "no-state", "page-outside", "truncated", "config-size", "huge"])
def test_destination_rejects_bad_streams(spawn, data, needle):
    dst = spawn("--level", "info")
    port = free_port()
    assert dst.req("PUT", "/migration/receive", {"listen": f"127.0.0.1:{port}"}).status == 204
    answer = raw_stream(port, data)
    assert answer in (b"F", b""), answer
    st = wait_state(dst, "failed")
    assert needle in st["error"], st
    assert dst.req("GET", "/").json["state"] == "Not started"
    # The process is still usable: it may listen again.
    assert dst.req("PUT", "/migration/receive", {"listen": f"127.0.0.1:{free_port()}"}).status == 204


def test_request_refusals(spawn):
    k = spawn()
    for body, needle in [({"listen": "localhost:80"}, "not a numeric"), ({"listen": "1.2.3.4"}, "ADDRESS:PORT"),
                         ({"listen": "127.0.0.1:0"}, "port must be"), ({"listen": "[::1]80"}, "[IPv6]:PORT"),
                         ({"listen": 5}, "listen"), ({}, "listen")]:
        r = k.req("PUT", "/migration/receive", body)
        assert r.status == 400 and needle in r.fault, (body, r)
    r = k.req("PUT", "/migration/send", {"destination": "127.0.0.1:1"})
    assert r.status == 400 and "before starting" in r.fault, r
    # A port someone else holds.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        r = k.req("PUT", "/migration/receive", {"listen": f"127.0.0.1:{s.getsockname()[1]}"})
        assert r.status == 400 and "Address already in use" in r.fault, r
    assert k.req("PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": 64}).status == 204
    r = k.req("PUT", "/migration/receive", {"listen": f"127.0.0.1:{free_port()}"})
    assert r.status == 400 and "only allowed before" in r.fault, r
    src = boot(spawn, stop=0)
    src.wait_console("count 1 ")
    for body, needle in [({"destination": "example.com:80"}, "not a numeric"),
                         ({"destination": "127.0.0.1:1", "downtime_ms": 0}, "downtime_ms"),
                         ({"destination": "127.0.0.1:1", "max_rounds": 100000}, "max_rounds")]:
        r = src.req("PUT", "/migration/send", body)
        assert r.status == 400 and needle in r.fault, (body, r)


NETNS = shutil.which("ip") and os.geteuid() == 0


@pytest.mark.skipif(not NETNS, reason="needs root and iproute2 for network namespaces")
def test_migrate_across_network_namespaces(kite, workdir):
    """Source and destination each in a network namespace of its own, joined by a veth
    pair: the stream crosses a link, not loopback (10.99.0.2 is not reachable otherwise)."""
    tag = f"k{os.getpid() % 100000}"
    a, b = f"{tag}a", f"{tag}b"
    ip = shutil.which("ip")

    def sh(*c):
        subprocess.run([ip, *c], check=True, capture_output=True)

    procs = []
    try:
        sh("netns", "add", a)
        sh("netns", "add", b)
        sh("link", "add", f"{tag}va", "netns", a, "type", "veth", "peer", "name", f"{tag}vb", "netns", b)
        sh("-n", a, "addr", "add", "10.99.0.1/24", "dev", f"{tag}va")
        sh("-n", b, "addr", "add", "10.99.0.2/24", "dev", f"{tag}vb")
        for ns, dev in ((a, f"{tag}va"), (b, f"{tag}vb")):
            sh("-n", ns, "link", "set", dev, "up")
            sh("-n", ns, "link", "set", "lo", "up")
        for name, ns in (("s", a), ("d", b)):
            d = workdir / name
            d.mkdir()
            procs.append(KiteProc(ip, d, ["netns", "exec", ns, kite, "--api-sock", d / "api.sock",
                                          "--level", "info"], api=False))
        src, dst = procs
        for k in procs:
            k.sock = k.dir / "api.sock"
            k.wait_ready()
        assert src.req("PUT", "/boot-source", {"kernel_image_path": str(COUNTER),
                                               "boot_args": "stop=0"}).status == 204
        assert src.req("PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": 64}).status == 204
        assert src.req("PUT", "/actions", {"action_type": "InstanceStart"}).status == 204
        src.wait_console("count 3 ")
        assert dst.req("PUT", "/migration/receive", {"listen": "10.99.0.2:7000"}).status == 204
        assert src.req("PUT", "/migration/send", {"destination": "10.99.0.2:7000"}).status == 204
        assert src.wait_exit() == 0
        wait_dst_past(src, dst)
        assert_joined(src, dst)
        st = status(dst)
        assert st["state"] == "completed" and st["peer"] == "10.99.0.1", st
    finally:
        for p in procs:
            p.kill()
        subprocess.run([ip, "netns", "del", a], capture_output=True)
        subprocess.run([ip, "netns", "del", b], capture_output=True)

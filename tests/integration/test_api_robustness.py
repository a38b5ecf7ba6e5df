"""The API server under hostile and careless clients: a thousand random and truncated
requests (fixed seed), clients that vanish mid-request, fifty at once, pipelining.
kite must never die, never hang, and every byte it sends back must be well-formed
HTTP/1.1 with a JSON body, if any."""
import json
import os
import random
import signal
import socket
import struct
import threading

import pytest

from kiteapi import (MAX_BODY, Contract, UnixHTTPConnection, http_request, parse_responses,  # noqa: F401
                     raw_exchange, spawn, wait_for, workdir)
from kitetest import GUESTS

SEED = 20261122
ROUNDS = 1000

C = Contract()

# No /logger or /metrics: a random valid body there would create files.
PATHS = ["/", "/version", "/actions", "/boot-source", "/machine-config", "/cpu-config",
         "/drives/d1", "/network-interfaces/n1", "/vsock", "/entropy", "/balloon",
         "/balloon/statistics", "/vm", "/vm/config", "/serial", "/mmds", "/snapshot/create",
         "//", "/drives/", "/drives/a/b", "/version?x=1", "/%00", "*", "http://localhost/version"]
BODIES = {  # path -> definition of its PUT/PATCH body
    "/actions": "InstanceActionInfo", "/boot-source": "BootSource",
    "/machine-config": "MachineConfiguration", "/cpu-config": "CpuConfig", "/drives/d1": "Drive",
    "/network-interfaces/n1": "NetworkInterface", "/vsock": "Vsock", "/entropy": "EntropyDevice",
    "/balloon": "Balloon", "/balloon/statistics": "BalloonStatsUpdate", "/vm": "Vm",
    "/serial": "SerialDevice",
}
METHODS = ["GET"] * 4 + ["PUT"] * 4 + ["PATCH"] * 3 + ["POST", "DELETE", "HEAD", "OPTIONS", "CONNECT",
                                                         "TRACE", "G3T", "get", "PUTX", ""]
# Safe values: the fuzzer must never name a real kernel or a writable path.
VALUES = {"kernel_image_path": "/kite-fuzz/no-kernel", "initrd_path": "/kite-fuzz/no-initrd",
          "serial_out_path": "/kite-fuzz/serial", "uds_path": "/kite-fuzz/v.sock",
          "path_on_host": "/kite-fuzz/disk", "drive_id": "d1", "iface_id": "n1",
          "action_type": "FlushMetrics", "vcpu_count": 2, "mem_size_mib": 64}


def rand_text(rng, n, alphabet="abcdefghijklmnopqrstuvwxyz0123456789 _-.:"):
    return "".join(rng.choice(alphabet) for _ in range(n))


def rand_json(rng, depth=0):
    r = rng.random()
    if depth > 2 or r < 0.3:
        return rng.choice([None, True, False, rng.randint(-2**40, 2**40), rng.random() * 1e6,
                           rand_text(rng, rng.randint(0, 20)), -1, 0, 2**63 - 1])
    if r < 0.65:
        return {rand_text(rng, rng.randint(1, 12)): rand_json(rng, depth + 1) for _ in range(rng.randint(0, 4))}
    return [rand_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]


def rand_body(rng, path):
    r = rng.random()
    if path in BODIES and r < 0.45:
        body = C.valid(BODIES[path], full=rng.random() < 0.5, values=VALUES)
        if rng.random() < 0.5 and isinstance(body, dict):
            # Break or bend one member.
            key = rng.choice(list(body) + ["kite_extra"])
            if rng.random() < 0.3:
                body.pop(key, None)
            else:
                body[key] = rand_json(rng, 2)
        return json.dumps(body).encode()
    if r < 0.65:
        return json.dumps(rand_json(rng)).encode()
    if r < 0.8:
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 600)))
    if r < 0.83:
        return b"{" + b" " * rng.randint(MAX_BODY - 100, MAX_BODY + 100) + b"}"
    return b""


def rand_headers(rng):
    pool = [("Host", "localhost"), ("Accept", "application/json"), ("Content-Type", "application/json"),
            ("User-Agent", "kite-fuzz/1"), ("Connection", "keep-alive"), ("Expect", "100-continue"),
            ("Accept-Encoding", "gzip"), ("X-" + rand_text(rng, 8, "abcxyz"), rand_text(rng, 30)),
            ("X-Long", "v" * rng.randint(100, 6000))]
    hs = [rng.choice(pool) for _ in range(rng.randint(0, 5))]
    out = b"".join(b"%s: %s\r\n" % (k.encode(), v.encode()) for k, v in hs)
    r = rng.random()
    if r < 0.04:
        out += b"no colon in this header\r\n"
    elif r < 0.08:
        out += b"X-Bin: \x00\x01\xff\r\n"
    elif r < 0.1:
        out += b"X-Bare-LF: yes\n"
    return out


def rand_request(rng):
    """(bytes, complete): complete when the framing is right, so a reply must come."""
    if rng.random() < 0.08:
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 300))), False
    method = rng.choice(METHODS)
    path = rng.choice(PATHS) if rng.random() < 0.9 else "/" + rand_text(rng, rng.randint(0, 40), "abc/%?#=&")
    version = "HTTP/1.1" if rng.random() < 0.9 else rng.choice(["HTTP/1.0", "HTTP/1.1", "HTTP/9.9"])
    head = f"{method} {path} {version}\r\n".encode() + rand_headers(rng)
    body = rand_body(rng, path) if method not in ("GET", "HEAD") or rng.random() < 0.1 else b""
    complete = True
    r = rng.random()
    if not body and r < 0.5:
        req = head + b"\r\n"
    elif r < 0.75:
        req = head + b"Content-Length: %d\r\n\r\n" % len(body) + body
    elif r < 0.9:
        req = head + b"Transfer-Encoding: chunked\r\n\r\n"
        pos = 0
        while pos < len(body):
            n = rng.randint(1, 3000)
            req += b"%x\r\n%s\r\n" % (len(body[pos:pos + n]), body[pos:pos + n])
            pos += n
        req += b"0\r\n\r\n"
    else:
        # A Content-Length that lies: kite waits for more, or reads the rest as a request.
        req = head + b"Content-Length: %d\r\n\r\n" % max(0, len(body) + rng.randint(-20, 20)) + body
        complete = False
    if rng.random() < 0.3:
        req = req[:rng.randint(0, max(0, len(req) - 1))]
        complete = False
    return req, complete


def exchange(sock, req, complete):
    """Sends one fuzz request; returns the replies (checked well-formed by the parser)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(sock))
    buf = b""
    try:
        try:
            s.sendall(req)
        except (BrokenPipeError, ConnectionResetError):
            pass
        # A complete request must be answered; for a cut one, take what is there.
        s.settimeout(5.0 if complete else 0.005)
        while True:
            if complete and parse_responses(buf)[0]:
                break
            try:
                b = s.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not b:
                break
            buf += b
    finally:
        s.close()
    return parse_responses(buf)[0]


def test_random_and_truncated_requests(spawn):
    k = spawn()
    rng = random.Random(SEED)
    answered = statuses = 0
    seen = set()
    for i in range(ROUNDS):
        req, complete = rand_request(rng)
        try:
            resps = exchange(k.sock, req, complete)
        except AssertionError as e:
            pytest.fail(f"round {i}: malformed reply to {req[:300]!r}: {e}")
        if complete:
            assert resps, f"round {i}: no reply to a complete request {req[:300]!r}"
        for r in resps:
            assert r.status in (200, 204, 400), (i, req[:300], r)
            if r.status == 400:
                r.fault
            seen.add(r.status)
        answered += bool(resps)
        statuses += len(resps)
        if i % 100 == 99:
            assert k.alive(), f"kite died by round {i}:\n{k.stderr()[-2000:]}"
    assert k.alive(), k.stderr()[-2000:]
    # The loop really exercised both outcomes, and kite still answers.
    print(f"answered {answered}, replies {statuses}, statuses {sorted(seen)}")
    assert answered > ROUNDS // 3 and {204, 400} <= seen, (answered, seen)
    r = k.req("GET", "/")
    assert r.status == 200 and r.json["state"] == "Not started"
    # kite said nothing but its warnings (no sanitizer report in an ASan build, say).
    odd = [line for line in k.stderr().splitlines() if not line.startswith("kite: warning: API ")]
    assert not odd, odd[:20]
    # No client slot leaked: 50 clients at once are all still served.
    _concurrent_gets(k.sock, 50)


def _concurrent_gets(sock, n):
    def one():
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(sock))
        return s
    conns = [one() for _ in range(n)]
    try:
        for s in conns:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        for s in conns:
            s.settimeout(5)
            buf = b""
            while not parse_responses(buf)[0]:
                b = s.recv(4096)
                assert b, "a client was closed without a reply"
                buf += b
            assert parse_responses(buf)[0][0].status == 200
    finally:
        for s in conns:
            s.close()


@pytest.mark.parametrize("cut", ["request line", "headers", "body", "chunk"])
@pytest.mark.parametrize("how", ["close", "reset"])
def test_client_disconnects_mid_request(spawn, cut, how):
    k = spawn()
    body = json.dumps({"vcpu_count": 2, "mem_size_mib": 256}).encode()
    full = b"PUT /machine-config HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    part = {
        "request line": full[:10],
        "headers": full[:full.index(b"Content-Length") + 5],
        "body": full[:-len(body) // 2],
        "chunk": b"PUT /machine-config HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n{\"vcpu_cou",
    }[cut]
    for _ in range(20):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(k.sock))
        s.sendall(part)
        if how == "reset":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    assert k.alive()
    r = k.req("GET", "/machine-config")
    assert r.status == 200 and r.json["vcpu_count"] == 1, r  # the half request did nothing
    _concurrent_gets(k.sock, 50)  # and the 20 slots were given back


def test_slow_client_does_not_block_others(spawn):
    k = spawn()
    body = json.dumps({"vcpu_count": 3, "mem_size_mib": 96}).encode()
    full = b"PUT /machine-config HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    slow = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    slow.connect(str(k.sock))
    slow.settimeout(5)
    try:
        slow.sendall(full[:25])
        assert k.req("GET", "/").status == 200  # served while the slow one is half-way
        assert k.req("GET", "/machine-config").json["vcpu_count"] == 1
        slow.sendall(full[25:60])
        assert k.req("GET", "/version").status == 200
        slow.sendall(full[60:])
        buf = b""
        while not parse_responses(buf)[0]:
            b = slow.recv(4096)
            assert b
            buf += b
        assert parse_responses(buf)[0][0].status == 204
    finally:
        slow.close()
    assert k.req("GET", "/machine-config").json["vcpu_count"] == 3


def test_request_a_byte_at_a_time(spawn):
    k = spawn()
    body = json.dumps({"vcpu_count": 5, "mem_size_mib": 80}).encode()
    full = b"PUT /machine-config HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    resps, rest, _ = raw_exchange(k.sock, None, chunks=[full[i:i + 1] for i in range(len(full))])
    assert [r.status for r in resps] == [204] and rest == b""
    assert k.req("GET", "/machine-config").json["vcpu_count"] == 5


def test_fifty_concurrent_clients(spawn):
    k = spawn()
    n = 50
    barrier = threading.Barrier(n)
    errors = []
    written = {}

    def client(i):
        try:
            conn = UnixHTTPConnection(k.sock)
            barrier.wait(timeout=10)
            r = http_request(k.sock, "GET", "/", conn=conn)
            assert r.status == 200 and r.json["state"] == "Not started", r
            mc = {"vcpu_count": i % 32 + 1, "mem_size_mib": 128 + i}
            written[i] = mc
            r = http_request(k.sock, "PUT", "/machine-config", mc, conn=conn)
            assert (r.status, r.body) == (204, b""), r
            r = http_request(k.sock, "GET", "/machine-config", conn=conn)
            assert r.status == 200, r
            got = r.json
            # Some client's whole write, never a mix of two.
            assert got["vcpu_count"] == (got["mem_size_mib"] - 128) % 32 + 1, got
            conn.close()
        except Exception as e:  # reported below, with the client's number
            errors.append((i, repr(e)))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads), "a client hung"
    assert not errors, errors
    final = k.req("GET", "/machine-config").json
    assert {"vcpu_count": final["vcpu_count"], "mem_size_mib": final["mem_size_mib"]} in written.values()


def test_pipelined_requests_answered_in_order(spawn):
    k = spawn()
    two = b"GET /version HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"
    resps, rest, _ = raw_exchange(k.sock, two, want=2)
    assert [r.status for r in resps] == [200, 200] and rest == b""
    assert "firecracker_version" in resps[0].json and resps[1].json["app_name"] == "kite"

    body = json.dumps({"vcpu_count": 7, "mem_size_mib": 70}).encode()
    three = (b"PUT /machine-config HTTP/1.1\r\nContent-Length: 3\r\n\r\n{x}"
             b"PUT /machine-config HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s"
             b"GET /machine-config HTTP/1.1\r\n\r\n") % (len(body), body)
    resps, rest, _ = raw_exchange(k.sock, three, want=3)
    # A refused body does not end the connection; each answer belongs to its request.
    assert [r.status for r in resps] == [400, 204, 200], resps
    assert resps[0].fault
    assert resps[2].json["vcpu_count"] == 7


def test_many_pipelined_requests(spawn):
    k = spawn()
    n = 200
    data = b"".join(b"GET /version?n=%d HTTP/1.1\r\n\r\n" % i for i in range(n))
    resps, rest, _ = raw_exchange(k.sock, data, want=n, timeout=10)
    assert len(resps) == n and all(r.status == 200 for r in resps) and rest == b""


def test_half_closed_client_gets_its_replies(spawn):
    k = spawn()
    n = 50
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    # The requests and the end of input (as `nc -N` or a one-shot client sends them) must
    # reach kite together, whatever the scheduling: queue both while kite is stopped.
    k.proc.send_signal(signal.SIGSTOP)
    try:
        wait_for(lambda: _proc_state(k.proc.pid) == "T", what="kite to stop")
        s.connect(str(k.sock))
        s.sendall(b"".join(b"GET /version?n=%d HTTP/1.1\r\n\r\n" % i for i in range(n)))
        s.shutdown(socket.SHUT_WR)
    finally:
        k.proc.send_signal(signal.SIGCONT)
    buf = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        buf += b
    s.close()
    resps, rest = parse_responses(buf)
    assert len(resps) == n and rest == b"", (len(resps), rest[:100])


def _proc_state(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def test_upgrade_header_is_ignored(spawn):
    k = spawn()
    data = (b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
            b"HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\nGET /version HTTP/1.1\r\nHost: x\r\n\r\n")
    resps, _, _ = raw_exchange(k.sock, data, want=2)
    assert [r.status for r in resps] == [200, 200], resps


@pytest.mark.parametrize("request_head", [b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n",
                                          b"GET / HTTP/1.0\r\n"], ids=["connection-close", "http-1.0"])
def test_connection_close_is_honoured(spawn, request_head):
    k = spawn()
    resps, rest, closed = raw_exchange(k.sock, request_head + b"\r\n", want=2, timeout=2)
    assert [r.status for r in resps] == [200] and rest == b""
    assert closed, "kite kept the connection open"


def test_failed_starts_leak_nothing(spawn):
    k = spawn()
    bad = k.dir / "not-x86.elf"
    bad.write_bytes(b"\x7fELF" + bytes(60))
    big = k.dir / "big-initrd"
    big.write_bytes(bytes(8 << 20))
    attempts = [({"kernel_image_path": str(bad)}, None),
                ({"kernel_image_path": str(GUESTS / "idle.elf"), "initrd_path": str(big)},
                 {"vcpu_count": 1, "mem_size_mib": 4})]
    pid = k.proc.pid

    def usage():
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        threads = len(os.listdir(f"/proc/{pid}/task"))
        vm_kib = int(open(f"/proc/{pid}/status").read().split("VmSize:")[1].split()[0])
        return fds, threads, vm_kib

    for boot, mc in attempts:
        if mc:
            assert k.req("PUT", "/machine-config", mc).status == 204
        assert k.req("PUT", "/boot-source", boot).status == 204
        r = k.req("PUT", "/actions", {"action_type": "InstanceStart"})
        assert r.status == 400 and r.fault
        base = usage()
        for _ in range(30):
            assert k.req("PUT", "/actions", {"action_type": "InstanceStart"}).status == 400
        # Closed connections are reaped asynchronously: poll until they are.
        wait_for(lambda: usage()[:2] <= base[:2], what=f"fds/threads back to {base} (now {usage()})")
        assert usage()[2] <= base[2] + 16 * 1024, (base, usage())
    assert k.req("GET", "/").json["state"] == "Not started"

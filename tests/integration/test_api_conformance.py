"""kite's HTTP API against Firecracker's contract (firecracker-api.yaml).

For every operation kite implements: a valid body generated from the contract's
definition gets 204 (200 and a body matching the response definition for GETs) when
the operation is allowed in the current state, and a 400 with a fault_message when it
is not (pre-boot only operations after InstanceStart, post-boot only ones before it).
Every body definition is then broken one way at a time (a required member missing,
each member of a wrong type, an unknown member, a bad enum value, an integer out of
bounds, nested ones too) and must get a 400 naming the member. Then HTTP-level errors,
GET /vm/config as a --config-file, and a VM's lifecycle on this host's /dev/kvm."""
import json
import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

from kiteapi import (MAX_BODY, Contract, KiteProc, curl, raw_exchange, spawn, wait_for,  # noqa: F401
                     workdir)
from kitetest import GUESTS, needs_kvm

C = Contract()

BEFORE = "not supported before starting the microVM"
AFTER = "not supported after starting the microVM"

# kite's route table (src/api/api.c), as (method, path template of the contract).
ROUTES = [
    ("GET", "/"),
    ("GET", "/version"),
    ("PUT", "/actions"),
    ("PUT", "/boot-source"),
    ("GET", "/machine-config"),
    ("PUT", "/machine-config"),
    ("PATCH", "/machine-config"),
    ("PUT", "/cpu-config"),
    ("PUT", "/drives/{drive_id}"),
    ("PATCH", "/drives/{drive_id}"),
    ("PUT", "/network-interfaces/{iface_id}"),
    ("PATCH", "/network-interfaces/{iface_id}"),
    ("PUT", "/vsock"),
    ("PUT", "/entropy"),
    ("GET", "/balloon"),
    ("PUT", "/balloon"),
    ("PATCH", "/balloon"),
    ("GET", "/balloon/statistics"),
    ("PATCH", "/balloon/statistics"),
    ("PUT", "/logger"),
    ("PUT", "/metrics"),
    ("PATCH", "/vm"),
    ("GET", "/vm/config"),
    ("PUT", "/serial"),
    ("PUT", "/snapshot/create"),
    ("PUT", "/snapshot/load"),
]
BODY_ROUTES = [(m, t) for m, t in ROUTES if C.body_def(m, t)]

# Operations the contract calls pre-boot only (kite refuses them once started).
PRE_BOOT_ONLY = {
    ("PUT", "/boot-source"), ("PUT", "/machine-config"), ("PATCH", "/machine-config"),
    ("PUT", "/cpu-config"), ("PUT", "/drives/{drive_id}"), ("PUT", "/network-interfaces/{iface_id}"),
    ("PUT", "/vsock"), ("PUT", "/entropy"), ("PUT", "/balloon"), ("PUT", "/serial"),
    # Firecracker sets up logging and metrics once, before the microVM starts.
    ("PUT", "/logger"), ("PUT", "/metrics"),
    ("PUT", "/snapshot/load"),
}
# ... and post-boot only (refused before InstanceStart).
POST_BOOT_ONLY = {("PATCH", "/drives/{drive_id}"), ("PATCH", "/network-interfaces/{iface_id}"),
                  ("PATCH", "/vm"), ("PUT", "/snapshot/create")}
# Need a balloon configured first.
NEEDS_BALLOON = {("GET", "/balloon"), ("PATCH", "/balloon"), ("GET", "/balloon/statistics"),
                 ("PATCH", "/balloon/statistics")}

IDS = {"{drive_id}": "rootfs", "{iface_id}": "eth0"}


def concrete(template):
    for k, v in IDS.items():
        template = template.replace(k, v)
    return template


def route_id(r):
    return f"{r[0]} {r[1]}"


def plausible(d):
    """Values by member name for generated bodies: files inside the test's directory."""
    return {
        "kernel_image_path": str(GUESTS / "idle.elf"), "boot_args": "console=ttyS0",
        "initrd_path": str(d / "initrd.img"), "vcpu_count": 2, "mem_size_mib": 256,
        "drive_id": IDS["{drive_id}"], "iface_id": IDS["{iface_id}"],
        "path_on_host": str(d / "rootfs.ext4"), "partuuid": "0eaa91a0-01", "socket": str(d / "vhost.sock"),
        "host_dev_name": "tap0", "guest_mac": "06:00:AC:10:00:02", "mtu": 1500,
        "uds_path": str(d / "vsock.sock"), "vsock_id": "vsock0", "guest_cid": 3,
        "amount_mib": 16, "stats_polling_interval_s": 1,
        "level": "Warning", "log_path": str(d / "kite.log"), "module": "api_server::request",
        "metrics_path": str(d / "metrics.json"), "serial_out_path": str(d / "serial.out"),
        "action_type": "FlushMetrics", "state": "Resumed",
    }


def valid_body(method, template, d, full=False):
    return C.valid(C.body_def(method, template), full=full, values=plausible(d))


def check_response(method, template, reply, status=200):
    assert reply.status == status, reply
    schema = C.response_schema(method, template, status)
    assert schema, f"the contract has no {status} response for {method} {template}"
    assert reply.headers.get("content-type", "").startswith("application/json"), reply.headers
    problems = C.check(schema, reply.json)
    assert not problems, f"{method} {template}: {problems}\n{reply.json}"


# ----------------------------------------------------------- the route table ----

def test_route_table_is_in_the_contract():
    for method, template in ROUTES:
        op = C.op(method, template)  # KeyError: kite serves something the contract lacks
        assert 204 in op["responses"] or 200 in op["responses"]
    # PATCH /machine-config takes MachineConfiguration, /vm takes Vm, and so on: the
    # contract names a body for exactly the routes that are not GETs.
    assert {m for m, t in BODY_ROUTES} == {"PUT", "PATCH"}
    assert all(C.body_def(m, t) is None for m, t in ROUTES if m == "GET")


# ------------------------------------------------ valid bodies, before boot ----

@pytest.mark.parametrize("full", [False, True], ids=["required", "all-members"])
@pytest.mark.parametrize("route", ROUTES, ids=route_id)
def test_valid_request_before_boot(spawn, route, full):
    method, template = route
    k = spawn("--metrics-path", "metrics.json")  # FlushMetrics needs a metrics file
    if route in NEEDS_BALLOON:
        assert k.req("PUT", "/balloon", valid_body("PUT", "/balloon", k.dir)).status == 204
    body = valid_body(method, template, k.dir, full) if C.body_def(method, template) else None
    if body is not None:
        assert not C.check(C.body_def(method, template), body), body
    r = k.req(method, concrete(template), body)
    if route in POST_BOOT_ONLY:
        assert r.status == 400, r
        assert BEFORE in r.fault
    elif route == ("GET", "/balloon/statistics"):
        # Before boot there is no balloon device to report statistics.
        assert r.status == 400, r
        assert "not enabled" in r.fault
    elif route == ("PUT", "/snapshot/load"):
        # A generated body names no snapshot that exists (or both memory sources):
        # refused with the reason; loading for real is tests/integration/test_snapshot.py.
        assert r.status == 400, r
        assert "Cannot load the snapshot" in r.fault
    elif method == "GET":
        check_response(method, template, r)
    else:
        assert r.status == 204, r
        assert r.body == b""
    assert k.req("GET", "/").json["state"] == "Not started"


def test_put_is_reflected_by_get(spawn):
    k = spawn()
    mc = {"vcpu_count": 3, "mem_size_mib": 300, "smt": False, "track_dirty_pages": True}
    assert k.req("PUT", "/machine-config", mc).status == 204
    r = k.req("GET", "/machine-config")
    check_response("GET", "/machine-config", r)
    assert r.json == {**mc, "huge_pages": "None"}
    # PATCH keeps what it does not name (the contract's PATCH body has the required pair).
    assert k.req("PATCH", "/machine-config", {"vcpu_count": 4, "mem_size_mib": 300}).status == 204
    assert k.req("GET", "/machine-config").json == {**mc, "vcpu_count": 4, "huge_pages": "None"}
    bal = {"amount_mib": 8, "deflate_on_oom": True, "stats_polling_interval_s": 2}
    assert k.req("PUT", "/balloon", bal).status == 204
    assert k.req("PATCH", "/balloon", {"amount_mib": 9}).status == 204
    assert k.req("PATCH", "/balloon/statistics", {"stats_polling_interval_s": 5}).status == 204
    r = k.req("GET", "/balloon")
    check_response("GET", "/balloon", r)
    assert r.json == {**bal, "amount_mib": 9, "stats_polling_interval_s": 5}


def test_defaults_before_any_put(spawn):
    k = spawn("--id", "conformance-vm")
    r = k.req("GET", "/")
    check_response("GET", "/", r)
    assert r.json["state"] == "Not started" and r.json["id"] == "conformance-vm"
    r = k.req("GET", "/version")
    check_response("GET", "/version", r)
    r = k.req("GET", "/machine-config")
    check_response("GET", "/machine-config", r)
    # The contract: 1 vCPU and 128 MiB before any PUT, SMT off.
    assert (r.json["vcpu_count"], r.json["mem_size_mib"], r.json.get("smt", False)) == (1, 128, False)
    for method, path in [("GET", "/balloon"), ("PATCH", "/balloon"), ("GET", "/balloon/statistics"),
                         ("PATCH", "/balloon/statistics")]:
        body = valid_body(method, path, k.dir) if C.body_def(method, path) else None
        r = k.req(method, path, body)
        assert r.status == 400 and "alloon" in r.fault, (method, path, r)


@pytest.mark.parametrize("template, idkey", [("/drives/{drive_id}", "drive_id"),
                                             ("/network-interfaces/{iface_id}", "iface_id")])
def test_id_in_path_must_match_body(spawn, template, idkey):
    k = spawn()
    body = valid_body("PUT", template, k.dir)
    body[idkey] = "other"
    r = k.req("PUT", concrete(template), body)
    assert r.status == 400 and r.fault
    # Same id twice replaces, it does not add a second device.
    body[idkey] = IDS["{" + idkey + "}"]
    assert k.req("PUT", concrete(template), body).status == 204
    assert k.req("PUT", concrete(template), body).status == 204
    key = template.split("/")[1]
    assert len(k.req("GET", "/vm/config").json[key]) == 1


@pytest.mark.parametrize("what, body", [
    ("smt", {"vcpu_count": 2, "mem_size_mib": 128, "smt": True}),
    ("huge pages, odd size", {"vcpu_count": 2, "mem_size_mib": 127, "huge_pages": "2M"}),
    ("cpu template", {"vcpu_count": 2, "mem_size_mib": 128, "cpu_template": "T2"}),
    ("memory below 2 MiB", {"vcpu_count": 2, "mem_size_mib": 1}),
])
def test_machine_config_kite_cannot_do_is_refused(spawn, what, body):
    # Valid for the contract, but kite cannot do it: refused, never silently ignored.
    assert not C.check("MachineConfiguration", body)
    k = spawn()
    r = k.req("PUT", "/machine-config", body)
    assert r.status == 400 and r.fault, (what, r)
    assert k.req("GET", "/machine-config").json["vcpu_count"] == 1


@needs_kvm
def test_huge_pages_without_a_reservation_fail_the_start_clearly(spawn):
    # This host reserves no 2 MiB pages (HugePages_Total 0): the start fails
    # with the reason, not with SIGBUS in the guest later.
    with open("/proc/meminfo") as f:
        if any(l.startswith("HugePages_Free:") and int(l.split()[1]) >= 16 for l in f):
            pytest.skip("this host has huge pages reserved")
    k = spawn()
    assert k.req("PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": 32, "huge_pages": "2M"}).status == 204
    assert k.req("GET", "/machine-config").json["huge_pages"] == "2M"
    assert k.req("PUT", "/boot-source", {"kernel_image_path": str(GUESTS / "idle.elf")}).status == 204
    r = k.req("PUT", "/actions", {"action_type": "InstanceStart"})
    assert r.status == 400, r
    assert "huge pages 2M" in r.fault and "vm.nr_hugepages" in r.fault


def test_optional_member_null_is_absent(spawn):
    k = spawn()
    body = {"kernel_image_path": str(GUESTS / "idle.elf"), "initrd_path": None}
    r = k.req("PUT", "/boot-source", body)
    assert r.status == 204, r
    assert k.req("GET", "/vm/config").json["boot-source"].get("initrd_path") is None


def test_cpu_config_short_bitmap_is_refused(spawn):
    k = spawn()
    body = {"msr_modifiers": [{"addr": "0x10a", "bitmap": "0b0"}]}
    assert not C.check("CpuConfig", body)
    r = k.req("PUT", "/cpu-config", body)
    assert r.status == 400 and "msr_modifiers[0].bitmap '0b0': 1 bits where 64 are needed" in r.fault


# --------------------------------------------------------- broken bodies ----

WRONG = {
    "string": [7, True, ["x"]],
    "integer": ["7", 2.5, True],
    "number": ["7", False],
    "boolean": ["true", 1],
    "array": [{}, "x"],
    "object": [[], "x", 7],
}


def _type(s):
    return "string" if "enum" in s and "type" not in s else s.get("type", "object")


def mutations(schema, body, path=(), depth=0):
    """(kind, member path, broken body) for each way to break `body` one change at a time."""
    s = C.resolve({"$ref": schema} if isinstance(schema, str) else schema)
    props, req = s.get("properties", {}), s.get("required", [])

    def at(value_fn):
        """A copy of the top-level body with the object at `path` replaced by value_fn(obj)."""
        def rebuild(obj, rest):
            if not rest:
                return value_fn(dict(obj))
            o = dict(obj)
            o[rest[0]] = rebuild(obj[rest[0]], rest[1:])
            return o
        return rebuild

    for k in req:
        yield "missing", path + (k,), at(lambda o, k=k: {x: v for x, v in o.items() if x != k})
        yield "null", path + (k,), at(lambda o, k=k: {**o, k: None})
    yield "unknown", path + ("kite_no_such_member",), at(lambda o: {**o, "kite_no_such_member": 1})
    for k, ps in props.items():
        rs = C.resolve(ps)
        for w in WRONG[_type(rs)]:
            yield f"type={w!r}", path + (k,), at(lambda o, k=k, w=w: {**o, k: w})
        if "enum" in rs:
            yield "enum", path + (k,), at(lambda o, k=k: {**o, k: "NoSuchValue"})
        if _type(rs) == "integer" and "minimum" in rs:
            yield "below-min", path + (k,), at(lambda o, k=k, m=rs["minimum"]: {**o, k: m - 1})
        if _type(rs) == "integer" and "maximum" in rs:
            yield "above-max", path + (k,), at(lambda o, k=k, m=rs["maximum"]: {**o, k: m + 1})
        if _type(rs) == "object" and "properties" in rs and k in body and depth < 2:
            yield from mutations(ps, body[k], path + (k,), depth + 1)


def broken_cases():
    d = Path("/nonexistent-kite-test-dir")
    for method, template in BODY_ROUTES:
        defname = C.body_def(method, template)
        full = valid_body(method, template, d, full=True)
        seen = set()
        for kind, path, fn in mutations(defname, full):
            # Apply the change at `path` (the object that holds the member) to the full body.
            holder = path[:-1]
            broken = fn(full, holder)
            key = (kind, path)
            if key in seen:
                continue
            seen.add(key)
            yield pytest.param(method, template, defname, kind, path, broken,
                               id=f"{method} {template} {kind} {'.'.join(path)}")
        for kind, raw in [("array", []), ("string", "x"), ("number", 1), ("null", None)]:
            yield pytest.param(method, template, defname, f"not-an-object-{kind}", (), raw,
                               id=f"{method} {template} not-an-object {kind}")


@pytest.fixture(scope="module")
def idle_kite(kite):
    """One kite before boot, for requests that must not change anything."""
    d = tempfile.mkdtemp(prefix="kite-api-", dir="/tmp")
    k = KiteProc(kite, d)
    yield k
    k.kill()
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("method, template, defname, kind, path, body", broken_cases())
def test_broken_body_is_refused(idle_kite, method, template, defname, kind, path, body):
    # The generator must really break the body, or the test proves nothing.
    if path:
        assert C.check(defname, body), f"{body} is valid"
    raw = json.dumps(body)
    r = idle_kite.req(method, concrete(template), raw)
    assert r.status == 400, r
    msg = r.fault
    if path:
        # kite names the member; a PATCH refused for the state would not.
        assert path[-1] in msg, msg
    assert idle_kite.req("GET", "/").json["state"] == "Not started"


def test_broken_bodies_change_nothing(idle_kite):
    # Runs after the broken bodies (same module kite): nothing of them was kept.
    cfg = idle_kite.req("GET", "/vm/config").json
    assert cfg.get("drives") == [] and cfg.get("network-interfaces") == []
    for key in ("boot-source", "vsock", "entropy", "balloon", "logger", "metrics", "cpu-config"):
        assert key not in cfg, cfg
    assert cfg["machine-config"]["vcpu_count"] == 1


# ------------------------------------------------------- HTTP-level errors ----

@pytest.mark.parametrize("method, path", [
    ("GET", "/nope"), ("GET", "/drives"), ("PUT", "/drives/a/b"), ("PUT", "/drives/"),
    ("GET", "/vm/config/x"), ("PUT", "/actions/x"), ("GET", "//"), ("PUT", "/Boot-source"),
    ("GET", "/version/"), ("PUT", "/mmds"), ("PUT", "/snapshot/x"), ("GET", "/hotplug/memory"),
])
def test_unknown_path(idle_kite, method, path):
    r = idle_kite.req(method, path, {} if method == "PUT" else None)
    assert r.status == 400, r
    assert r.fault


def _wrong_methods():
    served = {}
    for m, t in ROUTES:
        served.setdefault(concrete(t), set()).add(m)
    for path, methods in served.items():
        for m in ["GET", "PUT", "PATCH", "POST", "DELETE"]:
            if m not in methods:
                yield pytest.param(m, path, id=f"{m} {path}")


@pytest.mark.parametrize("method, path", _wrong_methods())
def test_wrong_method_on_a_known_path(idle_kite, method, path):
    r = idle_kite.req(method, path, {} if method in ("PUT", "PATCH", "POST") else None)
    assert r.status == 400, r
    assert r.fault


@pytest.mark.parametrize("raw", [
    b"{", b'{"vcpu_count": 2,}', b"{'vcpu_count': 2, 'mem_size_mib': 128}",
    b'{"vcpu_count": 2, "mem_size_mib": 128} trailing', b'{"vcpu_count": 2 "mem_size_mib": 128}',
    b'{"vcpu_count": 2, "vcpu_count": 3, "mem_size_mib": 128}',  # a duplicate key
    b"\xff\xfe{}", b'{"vcpu_count": 2, "mem_size_mib": 12\x008}', b"nul", b"   ",
    b'{"vcpu_count": 99999999999999999999999, "mem_size_mib": 128}',
], ids=lambda b: repr(b)[:40])
def test_invalid_json(idle_kite, raw):
    r = idle_kite.req("PUT", "/machine-config", raw)
    assert r.status == 400, r
    assert r.fault
    assert idle_kite.req("GET", "/machine-config").json["vcpu_count"] == 1


@pytest.mark.parametrize("route", BODY_ROUTES, ids=route_id)
def test_empty_body(idle_kite, route):
    method, template = route
    r = idle_kite.req(method, concrete(template), b"")
    assert r.status == 400, r
    assert r.fault


def _sized_boot_source(n):
    """A valid PUT /boot-source body of exactly n bytes (padded with JSON whitespace)."""
    core = json.dumps({"kernel_image_path": "/kite/none"})
    assert n >= len(core)
    return (core[:-1] + " " * (n - len(core)) + "}").encode()


def test_body_at_the_limit_is_accepted(idle_kite):
    body = _sized_boot_source(MAX_BODY)
    assert len(body) == MAX_BODY
    r = idle_kite.req("PUT", "/boot-source", body)
    assert r.status == 204, r


def test_body_over_the_limit(idle_kite):
    body = _sized_boot_source(MAX_BODY + 1)
    resps, _, _ = raw_exchange(idle_kite.sock, b"PUT /boot-source HTTP/1.1\r\nHost: x\r\n"
                               b"Content-Type: application/json\r\n"
                               b"Content-Length: %d\r\n\r\n" % len(body) + body)
    assert len(resps) == 1 and resps[0].status == 400, resps
    assert str(MAX_BODY) in resps[0].fault


def test_declared_length_over_the_limit_is_refused_before_the_body(idle_kite):
    # Only the headers are sent: kite must answer without waiting for 10 MB.
    resps, _, _ = raw_exchange(idle_kite.sock, b"PUT /boot-source HTTP/1.1\r\nHost: x\r\n"
                               b"Content-Length: 10000000\r\n\r\n")
    assert len(resps) == 1 and resps[0].status == 400, resps
    assert str(MAX_BODY) in resps[0].fault


def test_chunked_body_over_the_limit(idle_kite):
    body = _sized_boot_source(MAX_BODY + 4096)
    req = b"PUT /boot-source HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    for i in range(0, len(body), 4000):
        part = body[i:i + 4000]
        req += b"%x\r\n%s\r\n" % (len(part), part)
    req += b"0\r\n\r\n"
    resps, _, _ = raw_exchange(idle_kite.sock, req)
    assert len(resps) == 1 and resps[0].status == 400, resps
    assert str(MAX_BODY) in resps[0].fault
    assert idle_kite.req("GET", "/").status == 200


def test_chunked_body_within_the_limit(idle_kite):
    body = json.dumps({"vcpu_count": 1, "mem_size_mib": 128}).encode()
    req = b"PUT /machine-config HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    req += b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 5]), body[i:i + 5]) for i in range(0, len(body), 5))
    req += b"0\r\n\r\n"
    resps, _, _ = raw_exchange(idle_kite.sock, req)
    assert [r.status for r in resps] == [204]


@pytest.mark.parametrize("raw", [
    b"garbage\r\n\r\n",
    b"\x00\x01\x02\x03 / HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.1 extra\r\n\r\n",
    b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
    b"PUT /machine-config HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
    b"PUT /machine-config HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
    b"PUT /machine-config HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GET /" + b"a" * 4000 + b" HTTP/1.1\r\n\r\n",
], ids=lambda b: repr(b)[:40])
def test_malformed_http(idle_kite, raw):
    resps, rest, _ = raw_exchange(idle_kite.sock, raw)
    assert len(resps) == 1 and resps[0].status == 400, (resps, rest)
    assert resps[0].fault
    assert idle_kite.req("GET", "/").status == 200


# ---------------------------------------------------------------- curl ----

def test_curl_as_a_client(spawn):
    k = spawn()
    r = curl(k.sock, "GET", "/")
    check_response("GET", "/", r)
    r = curl(k.sock, "PUT", "/machine-config", {"vcpu_count": 2, "mem_size_mib": 256})
    assert (r.status, r.body) == (204, b"")
    r = curl(k.sock, "GET", "/machine-config")
    check_response("GET", "/machine-config", r)
    assert (r.json["vcpu_count"], r.json["mem_size_mib"]) == (2, 256)
    r = curl(k.sock, "PUT", "/machine-config", '{"vcpu_count": ')
    assert r.status == 400 and r.fault
    r = curl(k.sock, "DELETE", "/machine-config")
    assert r.status == 400 and r.fault
    r = curl(k.sock, "PUT", "/boot-source", _sized_boot_source(MAX_BODY + 1))
    assert r.status == 400 and str(MAX_BODY) in r.fault


# ------------------------------------------------------------ /vm/config ----

def _configure(k):
    """A sequence of PUTs; returns what each section must read back as."""
    d = k.dir
    secs = {
        "logger": {"level": "Warning", "log_path": str(d / "kite.log"), "show_level": False},
        "metrics": {"metrics_path": str(d / "metrics.json")},
        "machine-config": {"vcpu_count": 2, "mem_size_mib": 64, "smt": False},
        "cpu-config": {"cpuid_modifiers": [], "msr_modifiers": []},
        "boot-source": {"kernel_image_path": str(GUESTS / "idle.elf"), "boot_args": "console=ttyS0"},
    }
    paths = {"logger": "/logger", "metrics": "/metrics", "machine-config": "/machine-config",
             "cpu-config": "/cpu-config", "boot-source": "/boot-source"}
    for key, body in secs.items():
        r = k.req("PUT", paths[key], body)
        assert r.status == 204, (key, r)
    # A second boot-source replaces the first.
    secs["boot-source"] = {"kernel_image_path": str(GUESTS / "idle.elf"), "boot_args": "console=ttyS0 quiet"}
    assert k.req("PUT", "/boot-source", secs["boot-source"]).status == 204
    assert k.req("PATCH", "/machine-config", {"vcpu_count": 1, "mem_size_mib": 96}).status == 204
    secs["machine-config"].update(vcpu_count=1, mem_size_mib=96, track_dirty_pages=False, huge_pages="None")
    return secs


def test_vm_config_returns_what_was_put(spawn):
    k = spawn()
    want = _configure(k)
    r = k.req("GET", "/vm/config")
    check_response("GET", "/vm/config", r)
    got = r.json
    for key, body in want.items():
        assert got.get(key) == body, (key, got.get(key), body)
    assert got.get("drives", []) == [] and got.get("network-interfaces", []) == []
    # Devices kite cannot start yet are still shown as configured.
    drive = {"drive_id": "rootfs", "is_root_device": True, "path_on_host": "/dev/null", "is_read_only": True}
    assert k.req("PUT", "/drives/rootfs", drive).status == 204
    got = k.req("GET", "/vm/config")
    check_response("GET", "/vm/config", got)
    assert got.json["drives"] == [drive]


@needs_kvm
def test_vm_config_boots_as_a_config_file(spawn):
    k = spawn()
    _configure(k)
    r = k.req("GET", "/vm/config")
    check_response("GET", "/vm/config", r)
    cfg = k.dir / "vm.json"
    cfg.write_text(json.dumps(r.json))
    k2 = spawn("--config-file", cfg, api=False)
    k2.wait_console("idle guest up")
    assert k2.stop() == 128 + signal.SIGTERM
    assert k2.stderr() == ""


@needs_kvm
def test_vm_config_with_serial_boots_as_a_config_file(spawn):
    k = spawn()
    assert k.req("PUT", "/boot-source", {"kernel_image_path": str(GUESTS / "idle.elf")}).status == 204
    assert k.req("PUT", "/serial", {"serial_out_path": str(k.dir / "console.out")}).status == 204
    cfg = k.dir / "vm.json"
    cfg.write_text(json.dumps(k.req("GET", "/vm/config").json))
    k2 = spawn("--config-file", cfg, api=False)
    wait_for(lambda: "idle guest up" in _read(k.dir / "console.out") or not k2.alive(),
             what="the console file")
    assert k2.alive(), k2.stderr()
    assert k2.stop() == 128 + signal.SIGTERM


def _read(p):
    try:
        return p.read_text()
    except FileNotFoundError:
        return ""


# --------------------------------------------------- lifecycle on /dev/kvm ----

def _boot(k, kernel="idle.elf", **extra):
    assert k.req("PUT", "/boot-source", {"kernel_image_path": str(GUESTS / kernel), **extra}).status == 204
    r = k.curl("PUT", "/actions", {"action_type": "InstanceStart"})
    assert r.status == 204, r


@needs_kvm
def test_lifecycle_start_pause_resume_sigterm(spawn):
    k = spawn()
    assert k.req("PUT", "/machine-config", {"vcpu_count": 2, "mem_size_mib": 64}).status == 204
    _boot(k)
    k.wait_console("idle guest up")
    r = k.req("GET", "/")
    check_response("GET", "/", r)
    assert r.json["state"] == "Running"
    assert k.req("PATCH", "/vm", {"state": "Paused"}).status == 204
    assert k.req("GET", "/").json["state"] == "Paused"
    assert k.req("PATCH", "/vm", {"state": "Paused"}).status == 204  # again: still Paused
    assert k.req("GET", "/").json["state"] == "Paused"
    assert k.curl("PATCH", "/vm", {"state": "Resumed"}).status == 204
    assert k.req("GET", "/").json["state"] == "Running"
    assert k.stop() == 128 + signal.SIGTERM
    assert not os.path.exists(k.sock)
    assert k.stdout() == "idle guest up\n"


@needs_kvm
def test_sigterm_while_paused(spawn):
    k = spawn()
    _boot(k)
    k.wait_console("idle guest up")
    assert k.req("PATCH", "/vm", {"state": "Paused"}).status == 204
    assert k.stop() == 128 + signal.SIGTERM
    assert not os.path.exists(k.sock)


@needs_kvm
def test_sigterm_before_start_removes_the_socket(spawn):
    k = spawn()
    assert k.stop() == 128 + signal.SIGTERM
    assert not os.path.exists(k.sock)


@needs_kvm
def test_guest_reset_ends_kite_with_0(spawn):
    k = spawn()
    _boot(k, "reset.elf", boot_args="i8042")
    assert k.wait_exit() == 0
    assert not os.path.exists(k.sock)


@needs_kvm
def test_instance_start_without_boot_source(spawn):
    k = spawn()
    r = k.req("PUT", "/actions", {"action_type": "InstanceStart"})
    assert r.status == 400, r
    assert r.fault
    assert k.req("GET", "/").json["state"] == "Not started"


@needs_kvm
def test_instance_start_with_a_missing_kernel_then_a_good_one(spawn):
    k = spawn()
    missing = str(k.dir / "no-such-kernel.bin")
    assert k.req("PUT", "/boot-source", {"kernel_image_path": missing}).status == 204
    r = k.req("PUT", "/actions", {"action_type": "InstanceStart"})
    assert r.status == 400, r
    assert missing in r.fault
    assert k.alive()
    assert k.req("GET", "/").json["state"] == "Not started"
    # Nothing half-started is left behind: the next start works.
    _boot(k)
    k.wait_console("idle guest up")
    assert k.req("GET", "/").json["state"] == "Running"
    assert k.stop() == 128 + signal.SIGTERM


@needs_kvm
def test_entropy_device_starts_with_the_vm(spawn):
    k = spawn()
    assert k.req("PUT", "/entropy", {}).status == 204
    _boot(k)
    k.wait_console("idle guest up")
    assert k.req("GET", "/").json["state"] == "Running"
    assert k.req("GET", "/vm/config").json["entropy"] == {}


@needs_kvm
def test_vhost_user_drive_refuses_the_start(spawn):
    k = spawn()
    body = {"drive_id": "rootfs", "is_root_device": False, "path_on_host": "/dev/null", "socket": "/tmp/vhost.sock"}
    assert k.req("PUT", "/drives/rootfs", body).status == 204
    assert k.req("PUT", "/boot-source", {"kernel_image_path": str(GUESTS / "idle.elf")}).status == 204
    r = k.req("PUT", "/actions", {"action_type": "InstanceStart"})
    assert r.status == 400, r
    assert "vhost-user" in r.fault
    assert k.req("GET", "/").json["state"] == "Not started"
    assert k.stdout() == ""


@needs_kvm
def test_rate_limited_entropy_device_starts(spawn):
    k = spawn()
    rl = {"bandwidth": {"size": 4096, "one_time_burst": 0, "refill_time": 100}, "ops": {"size": 10, "refill_time": 1000}}
    assert k.req("PUT", "/entropy", {"rate_limiter": rl}).status == 204
    _boot(k)
    k.wait_console("idle guest up")
    assert k.req("GET", "/").json["state"] == "Running"
    assert k.req("GET", "/vm/config").json["entropy"]["rate_limiter"] == rl


@pytest.mark.parametrize("body", [
    {"rate_limiter": {"bandwidth": {"size": -1, "refill_time": 100}}},
    {"rate_limiter": {"ops": {"size": 10, "refill_time": -5}}},
    {"rate_limiter": {"ops": {"size": 10}}},
], ids=["negative-size", "negative-refill", "no-refill-time"])
def test_bad_rate_limiters_are_refused(spawn, body):
    k = spawn()
    r = k.req("PUT", "/entropy", body)
    assert r.status == 400, r
    assert r.fault


@needs_kvm
def test_two_root_drives_refuse_the_start(spawn):
    k = spawn()
    for d in ("a", "b"):
        body = {"drive_id": d, "is_root_device": True, "path_on_host": "/dev/null"}
        assert k.req("PUT", "/drives/" + d, body).status == 204
    assert k.req("PUT", "/boot-source", {"kernel_image_path": str(GUESTS / "idle.elf")}).status == 204
    r = k.req("PUT", "/actions", {"action_type": "InstanceStart"})
    assert r.status == 400, r
    assert "root block device" in r.fault


# ------------------------------------------------ every route after boot ----

@pytest.fixture(scope="module")
def running_kite(kite):
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        pytest.skip("/dev/kvm is not usable here")
    d = tempfile.mkdtemp(prefix="kite-api-", dir="/tmp")
    k = KiteProc(kite, d, ["--metrics-path", "metrics.json"])
    assert k.req("PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": 32}).status == 204
    _boot(k)
    k.wait_console("idle guest up")
    yield k
    k.kill()
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("route", ROUTES, ids=route_id)
def test_request_after_boot(running_kite, route):
    k = running_kite
    method, template = route
    body = valid_body(method, template, k.dir) if C.body_def(method, template) else None
    before = k.req("GET", "/vm/config").json
    r = k.req(method, concrete(template), body)
    if route in PRE_BOOT_ONLY:
        assert r.status == 400, r
        assert AFTER in r.fault
        assert k.req("GET", "/vm/config").json == before  # and nothing was changed
    elif route in NEEDS_BALLOON:
        # A balloon cannot be configured now, and kite could not start with one.
        assert r.status == 400, r
        assert "alloon" in r.fault
    elif route == ("PUT", "/snapshot/create"):
        # Allowed after boot, but only while paused.
        assert r.status == 400, r
        assert "pause it first" in r.fault
    elif route in {("PATCH", "/drives/{drive_id}"), ("PATCH", "/network-interfaces/{iface_id}")}:
        # Allowed now, but there is no such device.
        assert r.status == 400, r
        assert BEFORE not in r.fault and IDS["{" + template.split("{")[1]] in r.fault
    elif method == "GET":
        check_response(method, template, r)
    else:
        assert r.status == 204, r
    assert k.req("GET", "/").json["state"] == "Running"


@needs_kvm
def test_actions_before_and_after_boot(running_kite, spawn):
    k0 = spawn()
    r = k0.req("PUT", "/actions", {"action_type": "SendCtrlAltDel"})
    assert r.status == 400 and BEFORE in r.fault
    r = k0.req("PUT", "/actions", {"action_type": "FlushMetrics"})
    assert r.status == 400 and r.fault  # no metrics file configured
    k = running_kite
    r = k.req("PUT", "/actions", {"action_type": "InstanceStart"})
    assert r.status == 400 and AFTER in r.fault
    r = k.req("PUT", "/actions", {"action_type": "SendCtrlAltDel"})
    # Allowed now; the idle guest has interrupts off, so it ignores the keys and runs on.
    assert r.status == 204, r
    assert k.req("GET", "/").json["state"] == "Running"

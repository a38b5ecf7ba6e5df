"""Helpers for the API tests: kite started as Firecracker is (an HTTP API on a Unix
socket), clients for that socket (http.client, raw bytes, curl), a strict reader of
HTTP/1.1 responses, and Firecracker's API description (firecracker-api.yaml) as data:
valid request bodies generated from its definitions and responses checked against them.

Standard library, pytest and yaml only. Every wait polls with a deadline."""
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from kitetest import REPO

CONTRACT = Path(os.environ.get("KITE_API_CONTRACT", REPO.parent / "shared" / "firecracker-api.yaml"))
MAX_BODY = 51200  # Firecracker's default payload limit, which kite keeps
DEADLINE = 10     # seconds; every wait below ends here, only a hang reaches it


def wait_for(cond, timeout=DEADLINE, what="condition"):
    """Polls cond() until it returns something true; fails the test at the deadline."""
    end = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > end:
            pytest.fail(f"timed out after {timeout} s waiting for {what}", pytrace=False)
        time.sleep(0.005)


# ---------------------------------------------------------------- clients ----

class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over an AF_UNIX stream socket."""

    def __init__(self, path, timeout=DEADLINE):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = str(path)

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


class Reply:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # lower-case names
        self.body = body        # bytes

    @property
    def json(self):
        return json.loads(self.body) if self.body else None

    @property
    def fault(self):
        """The fault_message of an error reply (asserting the Error shape)."""
        j = self.json
        assert isinstance(j, dict) and set(j) == {"fault_message"}, self
        assert isinstance(j["fault_message"], str) and j["fault_message"].strip(), self
        return j["fault_message"]

    def __repr__(self):
        return f"<{self.status} {self.body[:300]!r}>"


def http_request(sock, method, path, body=None, headers=None, conn=None):
    """One request with http.client; body may be a dict/list (sent as JSON), str or bytes."""
    if body is not None and not isinstance(body, (bytes, str)):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    h = {"Accept": "application/json"}
    if body is not None:
        h["Content-Type"] = "application/json"
    h.update(headers or {})
    own = conn is None
    c = conn or UnixHTTPConnection(sock)
    try:
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        data = r.read()
        return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
    finally:
        if own:
            c.close()


def curl(sock, method, path, body=None, timeout=DEADLINE):
    """The same request through curl, a real client: returns a Reply (no headers)."""
    cmd = ["curl", "-sS", "--max-time", str(timeout), "--unix-socket", str(sock), "-X", method,
           "-H", "Accept: application/json", "-H", "Expect:", "-o", "-", "-w", "\n%{http_code} %{content_type}"]
    if body is not None:
        if not isinstance(body, (str, bytes)):
            body = json.dumps(body)
        cmd += ["-H", "Content-Type: application/json", "--data-binary", "@-"]
    cmd.append("http://localhost" + path)
    data = body.encode() if isinstance(body, str) else body
    r = subprocess.run(cmd, input=data or b"", capture_output=True, timeout=timeout + 5)
    assert r.returncode == 0, f"curl failed ({r.returncode}): {r.stderr.decode()}"
    out, _, tail = r.stdout.rpartition(b"\n")
    code, _, ctype = tail.decode().partition(" ")
    return Reply(int(code), {"content-type": ctype} if ctype else {}, out)


def raw_exchange(sock, data, timeout=2.0, want=1, chunks=None):
    """Sends bytes on a fresh connection and reads until `want` complete responses were
    parsed, the server closes, or the timeout. Returns (responses, leftover, closed).
    A reset after the server closed counts as closed (the replies read stay valid)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(str(sock))
    buf = b""
    closed = False
    try:
        try:
            for part in (chunks or [data]):
                s.sendall(part)
        except (BrokenPipeError, ConnectionResetError):
            closed = True
        end = time.monotonic() + timeout
        while not closed:
            resps, rest = parse_responses(buf)
            if len(resps) >= want:
                break
            left = end - time.monotonic()
            if left <= 0:
                break
            s.settimeout(left)
            try:
                b = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                closed = True
                break
            if not b:
                closed = True
                break
            buf += b
    finally:
        s.close()
    resps, rest = parse_responses(buf)
    return resps, rest, closed


_STATUS = re.compile(rb"HTTP/1\.1 ([1-5][0-9][0-9]) [^\r\n]*\r\n")
_HEADER = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*([^\r\n]*?)[ \t]*\r\n")


def parse_responses(buf):
    """Strictly parses HTTP/1.1 responses from buf: status line, headers, Content-Length
    framed body (none for 204). Returns (replies, unparsed tail); raises AssertionError
    on bytes that cannot be the start of a well-formed response."""
    out = []
    while buf:
        m = _STATUS.match(buf)
        if not m:
            # Only the start of a status line still arriving is acceptable.
            assert b"HTTP/1.1 ".startswith(buf[:9]) and b"\r\n" not in buf, \
                f"not an HTTP/1.1 response: {buf[:200]!r}"
            break
        pos = m.end()
        headers = {}
        complete = False
        while True:
            if buf[pos:pos + 2] == b"\r\n":
                pos += 2
                complete = True
                break
            hm = _HEADER.match(buf, pos)
            if not hm:
                assert b"\r\n" not in buf[pos:], f"malformed header line: {buf[pos:pos + 200]!r}"
                break
            headers[hm.group(1).decode().lower()] = hm.group(2).decode()
            pos = hm.end()
        if not complete:
            break
        status = int(m.group(1))
        if status == 204:
            assert "content-length" not in headers or headers["content-length"] == "0", headers
            n = 0
        else:
            assert "transfer-encoding" not in headers, headers
            assert re.fullmatch(r"[0-9]+", headers.get("content-length", "")), \
                f"{status} without a Content-Length: {headers}"
            n = int(headers["content-length"])
        if len(buf) - pos < n:
            break
        body = buf[pos:pos + n]
        if body:
            assert headers.get("content-type", "").startswith("application/json"), headers
            json.loads(body)  # raises on a body that is not JSON
        out.append(Reply(status, headers, body))
        buf = buf[pos + n:]
    return out, buf


# ----------------------------------------------------------- kite process ----

class KiteProc:
    """kite started with --api-sock in a short private directory (Unix socket paths are
    limited to 107 bytes); stdout (the guest's console) and stderr go to files."""

    def __init__(self, binary, workdir, args=(), api=True, wait=True):
        self.dir = Path(workdir)
        self.sock = self.dir / "api.sock"
        self.out_path = self.dir / "stdout"
        self.err_path = self.dir / "stderr"
        cmd = [str(binary)]
        if api:
            cmd += ["--api-sock", str(self.sock)]
        cmd += [str(a) for a in args]
        self.cmd = cmd
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                         cwd=self.dir)
        if api and wait:
            self.wait_ready()

    def wait_ready(self):
        def ready():
            if self.proc.poll() is not None:
                pytest.fail(f"kite exited {self.proc.returncode} before its API was up:\n"
                            f"{self.stderr()}", pytrace=False)
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.connect(str(self.sock))
                return True
            except OSError:
                return False
        wait_for(ready, what="the API socket")

    def req(self, method, path, body=None, **kw):
        return http_request(self.sock, method, path, body, **kw)

    def curl(self, method, path, body=None):
        return curl(self.sock, method, path, body)

    def stdout(self):
        return self.out_path.read_bytes().decode(errors="replace")

    def stderr(self):
        return self.err_path.read_bytes().decode(errors="replace")

    def wait_console(self, text):
        wait_for(lambda: text in self.stdout() or self._died(), what=f"{text!r} on the console")
        assert text in self.stdout(), f"kite exited {self.proc.returncode}:\n{self.stderr()}"

    def _died(self):
        return self.proc.poll() is not None

    def alive(self):
        return self.proc.poll() is None

    def wait_exit(self, timeout=DEADLINE):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"kite did not exit within {timeout} s", pytrace=False)

    def stop(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)
        return self.wait_exit()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=DEADLINE)


@pytest.fixture
def workdir():
    d = tempfile.mkdtemp(prefix="kite-api-", dir="/tmp")
    yield Path(d)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def spawn(kite, workdir):
    """spawn(*args, api=True) starts kite in its own directory; all are killed at teardown."""
    procs = []

    def start(*args, api=True, wait=True):
        d = workdir / f"k{len(procs)}"
        d.mkdir()
        k = KiteProc(kite, d, args, api=api, wait=wait)
        procs.append(k)
        return k

    yield start
    for k in procs:
        k.kill()


# ------------------------------------------------------------- the contract ----

def _enum(v):
    # YAML 1.1 reads the Logger level Off as the boolean false; the contract means "Off".
    return "Off" if v is False else v


class Contract:
    """firecracker-api.yaml: definitions, operations, valid bodies, response checks."""

    def __init__(self, path=CONTRACT):
        if not Path(path).exists():
            pytest.fail(f"the API contract {path} is missing (KITE_API_CONTRACT=... to point "
                        "at another copy)", pytrace=False)
        with open(path) as f:
            self.doc = yaml.safe_load(f)
        self.defs = self.doc["definitions"]

    def resolve(self, s):
        while "$ref" in s:
            s = self.defs[s["$ref"].rsplit("/", 1)[-1]]
        return s

    def op(self, method, template):
        return self.doc["paths"][template][method.lower()]

    def body_def(self, method, template):
        """The definition name of an operation's body, or None."""
        for p in self.op(method, template).get("parameters", []):
            if p.get("in") == "body":
                return p["schema"]["$ref"].rsplit("/", 1)[-1]
        return None

    def response_schema(self, method, template, status):
        r = self.op(method, template)["responses"].get(status)
        return r.get("schema") if r else None

    def props(self, name):
        s = self.resolve({"$ref": name} if isinstance(name, str) else name)
        return s.get("properties", {}), s.get("required", [])

    # A plausible value per field name; everything else follows from the type.
    def valid(self, schema, full=False, values=None, name=None):
        """A body that satisfies the schema: required members (all members with full),
        values from `values` by field name, enums from the enum list, integers in bounds."""
        values = values or {}
        s = self.resolve(schema) if isinstance(schema, dict) else self.resolve({"$ref": schema})
        if name in values:
            return values[name]
        if "enum" in s:
            choices = [_enum(e) for e in s["enum"]]
            return "None" if "None" in choices else choices[0]
        t = s.get("type", "object")
        if t == "object":
            if "properties" not in s:
                if "additionalProperties" in s:
                    return {"key": self.valid(s["additionalProperties"], full, values)}
                return {}
            req = s.get("required", [])
            return {k: self.valid(v, full, values, k) for k, v in s["properties"].items()
                    if full or k in req}
        if t == "string":
            return "x"
        if t == "integer":
            lo, hi = s.get("minimum"), s.get("maximum")
            v = 1 if lo is None else lo
            return v if hi is None else min(v, hi)
        if t == "number":
            return 1.5
        if t == "boolean":
            return False
        if t == "array":
            return []
        raise AssertionError(f"no value for {s}")

    def check(self, schema, value, where="body"):
        """Strict validation (unknown members are errors, as kite's requests are):
        returns a list of problems, empty when the value matches."""
        s = self.resolve(schema) if isinstance(schema, dict) else self.resolve({"$ref": schema})
        errs = []
        if "enum" in s:
            if value not in [_enum(e) for e in s["enum"]]:
                errs.append(f"{where}: {value!r} not in {s['enum']}")
            return errs
        t = s.get("type", "object")
        types = {"object": dict, "string": str, "array": list, "boolean": bool}
        if t == "integer":
            if not isinstance(value, int) or isinstance(value, bool):
                return [f"{where}: {value!r} is not an integer"]
            if "minimum" in s and value < s["minimum"]:
                errs.append(f"{where}: {value} < {s['minimum']}")
            if "maximum" in s and value > s["maximum"]:
                errs.append(f"{where}: {value} > {s['maximum']}")
            return errs
        if t == "number":
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            return [] if ok else [f"{where}: {value!r} is not a number"]
        if not isinstance(value, types[t]):
            return [f"{where}: {value!r} is not {t}"]
        if t == "array":
            for i, item in enumerate(value):
                errs += self.check(s.get("items", {}), item, f"{where}[{i}]")
        if t == "object":
            props = s.get("properties", {})
            for k in s.get("required", []):
                if k not in value:
                    errs.append(f"{where}.{k}: missing")
            for k, v in value.items():
                if k in props:
                    errs += self.check(props[k], v, f"{where}.{k}")
                elif "additionalProperties" in s:
                    errs += self.check(s["additionalProperties"], v, f"{where}.{k}")
                else:
                    errs.append(f"{where}.{k}: not in the contract")
        return errs

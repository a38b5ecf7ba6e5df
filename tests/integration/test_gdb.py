"""The gdb stub (`kite run --gdb`): the real gdb in batch mode and a small
remote-protocol client against tests/guests/gdb_target.c on /dev/kvm.

kite parks the guest until a debugger connects and continues, so every test
first waits (bounded) for kite's "waits for a debugger on ADDR" line, then talks
to ADDR. Guest progress is seen through markers (kite's stderr lines), never
through sleeps.

This project's /dev/kvm (the software kvm_pvm) runs CPL0 guest code in KVM's
instruction emulator, which cannot execute INT3 and does not check data
breakpoints, and the lab's TCG-emulated SVM cannot either (docs/gdb.md): software
breakpoints, the guest's own INT3 and watchpoints firing are tested here on
hosts with hardware virtualization only; their logic is unit-tested
(tests/unit/test_gdb_bp.c, test_gdb_exit.c)."""
import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

from kitetest import needs_kvm, run

pytestmark = needs_kvm

DONE = "kite: info: test guest done"
WAIT = 20  # seconds for any one marker; only a hang reaches it
GDB = "/usr/bin/gdb"
SOFT_KVM = os.path.isdir("/sys/module/kvm_pvm")
needs_hw_virt = pytest.mark.skipif(
    SOFT_KVM, reason="kvm_pvm runs CPL0 code in KVM's emulator: no INT3, no data breakpoints "
                     "(docs/gdb.md; logic in tests/unit/test_gdb_bp.c, test_gdb_exit.c)")
needs_gdb = pytest.mark.skipif(not os.access(GDB, os.X_OK), reason="gdb is not installed")


# ---- kite with a gdb stub ----

class Kite:
    """`kite run --gdb ADDR` on a guest, its output collected by threads so a
    test can wait for a line with a bounded timeout."""

    def __init__(self, kite, image, *args, gdb="tcp:127.0.0.1:0"):
        self.proc = subprocess.Popen(
            [kite, "run", "--kernel", str(image), "--test-device", "--level", "info",
             "--gdb", gdb, *map(str, args)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.out, self.err = [], []
        self.cond = threading.Condition()
        self.threads = [threading.Thread(target=self._drain, args=(f, buf), daemon=True)
                        for f, buf in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))]
        for t in self.threads:
            t.start()
        m = self.wait_err(r"kite: warning: gdb: the guest waits for a debugger on (\S+)$")
        self.addr = m.group(1)

    def _drain(self, f, buf):
        for line in iter(f.readline, b""):
            with self.cond:
                buf.append(line.decode(errors="replace").rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            buf.append(None)  # end of stream
            self.cond.notify_all()

    def wait_err(self, pattern, timeout=WAIT):
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for line in self.err:
                    m = line is not None and rx.search(line)
                    if m:
                        return m
                left = deadline - time.monotonic()
                if left <= 0 or None in self.err:
                    raise AssertionError(f"no stderr line matching {pattern!r}:\n" + self.stderr())
                self.cond.wait(left)

    def stderr(self):
        return "\n".join(l for l in self.err if l is not None)

    def stdout(self):
        return "\n".join(l for l in self.out if l is not None)

    def finish(self, timeout=WAIT):
        """Waits for kite to exit; returns its exit code."""
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("kite did not exit:\n" + self.stderr())
        for t in self.threads:
            t.join(timeout)
        return rc

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def target(self):
        """The address as gdb's `target remote` wants it."""
        if self.addr.startswith("tcp:"):
            return self.addr[4:]
        return self.addr  # unix:PATH


@pytest.fixture
def start(kite):
    started = []

    def _start(image, *args, **kw):
        k = Kite(kite, image, *args, **kw)
        started.append(k)
        return k
    yield _start
    for k in started:
        k.kill()


def assert_done(k, rc):
    assert rc == 0, f"exit {rc}\n{k.stderr()}"
    assert DONE in k.err, k.stderr()
    assert "guest: gdb_target: finished" in k.err, k.stderr()


# ---- a remote-protocol client ----

def frame(payload: bytes) -> bytes:
    return b"$" + payload + b"#" + b"%02x" % (sum(payload) & 0xFF)


class Rsp:
    def __init__(self, addr):
        if addr.startswith("tcp:"):
            host, port = addr[4:].rsplit(":", 1)
            self.s = socket.create_connection((host.strip("[]"), int(port)), timeout=WAIT)
        else:
            self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.s.settimeout(WAIT)
            self.s.connect(addr[5:])
        self.buf = b""

    def close(self):
        self.s.close()

    def send(self, raw: bytes):
        self.s.sendall(raw)

    def byte(self) -> bytes:
        while not self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                raise EOFError("kite closed the connection")
            self.buf += chunk
        b, self.buf = self.buf[:1], self.buf[1:]
        return b

    def ack(self) -> bytes:
        """The next acknowledgement byte ('+' or '-')."""
        b = self.byte()
        assert b in (b"+", b"-"), f"expected an ack, got {b!r} then {self.buf!r}"
        return b

    def packet(self) -> bytes:
        """The next packet from kite (checksum verified, escapes undone), acked."""
        b = self.byte()
        assert b == b"$", f"expected a packet, got {b!r} then {self.buf!r}"
        raw = b""
        while (b := self.byte()) != b"#":
            raw += b
        csum = self.byte() + self.byte()
        assert int(csum, 16) == sum(raw) & 0xFF, f"bad checksum on {raw!r}"
        self.send(b"+")
        out, esc = bytearray(), False
        for c in raw:
            if esc:
                out.append(c ^ 0x20)
                esc = False
            elif c == 0x7D:
                esc = True
            else:
                out.append(c)
        return bytes(out)

    def cmd(self, payload, reply=True):
        if isinstance(payload, str):
            payload = payload.encode()
        self.send(frame(payload))
        assert self.ack() == b"+"
        return self.packet().decode(errors="replace") if reply else None

    def regs(self):
        g = bytes.fromhex(self.cmd("g"))
        assert len(g) == 536
        names = ["rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp"] + \
            [f"r{i}" for i in range(8, 16)] + ["rip"]
        r = {n: int.from_bytes(g[8 * i:8 * i + 8], "little") for i, n in enumerate(names)}
        for i, n in enumerate(["eflags", "cs", "ss", "ds", "es", "fs", "gs"]):
            r[n] = int.from_bytes(g[136 + 4 * i:140 + 4 * i], "little")
        return r, g

    def read(self, addr, n):
        return bytes.fromhex(self.cmd(f"m{addr:x},{n:x}"))


# ---- the guest's symbols ----

@pytest.fixture(scope="session")
def target_elf(guests):
    return guests / "gdb_target.elf"


@pytest.fixture(scope="session")
def sym(target_elf):
    out = subprocess.run(["nm", str(target_elf)], capture_output=True, text=True, check=True).stdout
    table = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3:
            table[parts[2]] = int(parts[0], 16)
    return table


def gdb_batch(elf, target, *cmds, timeout=60):
    args = [GDB, "-nx", "-batch", "-ex", "set pagination off", "-ex", f"target remote {target}"]
    for c in cmds:
        args += ["-ex", c]
    return run(args + [str(elf)], timeout=timeout)


def values(gdb_out):
    """gdb's `$N = value` lines, in order."""
    return [m.group(1) for m in re.finditer(r"^\$\d+ = (.*)$", gdb_out, re.M)]


# ---- gdb itself ----

@needs_gdb
def test_gdb_hardware_breakpoint_registers_globals_step_detach(start, target_elf, sym):
    """gdb stops the guest at a function (an instruction breakpoint in DR0), reads
    its arguments in registers and a global in memory, single-steps one
    instruction, detaches; the guest then runs on to its end."""
    k = start(target_elf)
    r = gdb_batch(target_elf, k.target(),
                  "info threads", "hbreak add", "continue",
                  "p/x $pc", "p/x $rdi", "p/x $rsi", "p (unsigned long long)counter",
                  "stepi", "p/x $pc", "detach")
    out = r.stdout + r.stderr
    assert "Thread 1 (vCPU 0)" in out, out
    assert re.search(r"Breakpoint 1, 0x0*%x in add \(\)" % sym["add"], out), out
    v = values(out)
    assert v[:4] == [hex(sym["add"]), "0x2", "0x3", "0"], out
    pc = int(v[4], 16)
    assert sym["add"] < pc < sym["after_int3"], out  # one instruction further, still in add()
    assert "[Inferior 1 (Remote target) detached]" in out, out
    assert_done(k, k.finish())


@needs_gdb
def test_gdb_over_a_unix_socket_continues_to_the_guest_exit(start, target_elf, tmp_path):
    """Continuing to the end: gdb learns the guest exited (W packet) with kite's
    exit code."""
    sock = tmp_path / "gdb.sock"
    k = start(target_elf, gdb=f"unix:{sock}")
    assert k.addr == f"unix:{sock}"
    r = gdb_batch(target_elf, str(sock), "continue")
    assert "[Inferior 1 (Remote target) exited normally]" in r.stdout + r.stderr, r.stdout + r.stderr
    assert_done(k, k.finish())
    assert not sock.exists()  # kite removes its socket


@needs_gdb
@needs_hw_virt
def test_gdb_software_breakpoint(start, target_elf, sym):
    k = start(target_elf)
    r = gdb_batch(target_elf, k.target(), "break add", "continue", "p/x $pc",
                  "x/1xb add", "delete", "continue")
    out = r.stdout + r.stderr
    assert re.search(r"Breakpoint 1, 0x0*%x in add \(\)" % sym["add"], out), out
    assert values(out)[0] == hex(sym["add"])
    # the planted INT3 is invisible to memory reads
    assert not re.search(r"<add>:\s+0xcc", out), out
    assert "exited normally" in out, out
    assert_done(k, k.finish())


@needs_gdb
@needs_hw_virt
def test_gdb_guest_int3_reaches_the_guest_handler(start, target_elf, sym):
    """With a software breakpoint planted, every INT3 exits to kite; the guest's
    own (not one of the debugger's) is reinjected and its handler runs."""
    k = start(target_elf, "--cmdline", "int3", "--level", "debug")
    r = gdb_batch(target_elf, k.target(), "break after_int3", "continue", "p/x $pc",
                  "p *(unsigned int *)&bp_handled", "delete", "continue")
    out = r.stdout + r.stderr
    assert re.search(r"Breakpoint 1, 0x0*%x in after_int3 \(\)" % sym["after_int3"], out), out
    assert values(out)[:2] == [hex(sym["after_int3"]), "1"], out
    assert "exited normally" in out, out
    assert_done(k, k.finish())
    assert "gdb: vCPU 0: reinjected the guest's own #BP" in k.stderr()


@needs_gdb
@needs_hw_virt
def test_gdb_hardware_watchpoint_on_a_global(start, target_elf):
    k = start(target_elf)
    r = gdb_batch(target_elf, k.target(), "watch *(unsigned int *)&watched", "continue",
                  "p/x *(unsigned int *)&watched", "delete", "continue")
    out = r.stdout + r.stderr
    assert re.search(r"Hardware watchpoint 1: \*\(unsigned int \*\)&watched\s+Old value = 0\s+New value = 4660", out), out
    assert values(out)[0] == "0x1234", out
    assert "exited normally" in out, out
    assert_done(k, k.finish())


@needs_gdb
def test_gdb_interrupt_with_ctrl_c(start, target_elf, sym):
    """gdb's own Ctrl-C: SIGINT to gdb while it waits in `continue` (sent once the
    guest says it spins, so gdb is surely waiting) becomes 0x03 on the wire."""
    k = start(target_elf, "--cmdline", "spin")
    gdb = subprocess.Popen(
        [GDB, "-nx", "-batch", "-ex", f"target remote {k.target()}", "-ex", "continue",
         "-ex", "p/x $pc", "-ex", "set var *(unsigned int *)&go = 1", "-ex", "continue",
         str(target_elf)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        k.wait_err(r"guest: gdb_target: spinning")
        gdb.send_signal(signal.SIGINT)
        out, _ = gdb.communicate(timeout=60)
    finally:
        if gdb.poll() is None:
            gdb.kill()
    assert "Program received signal SIGINT, Interrupt." in out, out
    pc = int(values(out)[0], 16)
    assert sym["_start"] <= pc < sym["_start"] + 0x1000, out
    assert "[Inferior 1 (Remote target) exited normally]" in out, out
    assert_done(k, k.finish())


# ---- the protocol, from a client of our own ----

def test_interrupt_stops_a_running_guest(start, target_elf, sym):
    """0x03 on the connection stops the vCPUs (T02, SIGINT); the debugger then
    ends the guest's wait loop by writing a global and continues to the exit."""
    k = start(target_elf, "--cmdline", "spin")
    c = Rsp(k.addr)
    assert c.cmd("?") == "T05thread:1;"
    c.cmd("vCont;c", reply=False)
    k.wait_err(r"guest: gdb_target: spinning")
    c.send(b"\x03")
    assert c.packet() == b"T02thread:1;"
    regs, _ = c.regs()
    # in the guest's code: the loop, or on its way there from the print
    assert sym["_start"] <= regs["rip"] < sym["_start"] + 0x1000, hex(regs["rip"])
    spins = c.read(sym["spins"], 8)
    assert c.read(sym["spins"], 8) == spins  # stopped
    assert c.cmd(f"M{sym['go']:x},4:01000000") == "OK"
    c.cmd("c", reply=False)
    assert c.packet() == b"W00"
    assert_done(k, k.finish())


def test_interrupt_names_a_running_vcpu(start, target_elf):
    """With gdb last looking at the AP (still waiting for its SIPI), a Ctrl-C stop
    names the vCPU that was running guest code, not the one gdb looked at."""
    k = start(target_elf, "--cmdline", "spin", "--cpus", "2")
    c = Rsp(k.addr)
    assert c.cmd("Hg2") == "OK"
    assert c.regs()[0]["rip"] == 0xFFF0
    c.cmd("vCont;c", reply=False)
    k.wait_err(r"guest: gdb_target: spinning")
    c.send(b"\x03")
    assert c.packet() == b"T02thread:1;"
    assert c.cmd("qC") == "QC1"
    assert c.regs()[0]["rip"] != 0xFFF0
    assert c.cmd("D") == "OK"
    c.close()
    k.proc.send_signal(signal.SIGTERM)  # the guest spins on: nobody sets `go`
    assert k.finish() == 128 + signal.SIGTERM


def test_registers_read_and_write(start, target_elf, sym):
    k = start(target_elf)
    c = Rsp(k.addr)
    regs, g = c.regs()
    assert regs["rip"] == sym["_start"]       # the ELF entry: not run yet
    assert regs["rsi"] != 0                    # the zero page, per the boot protocol
    assert regs["cs"] == 0x10 and regs["ds"] == 0x18
    assert c.cmd("p10") == (g[128:136]).hex()  # rip by number
    assert c.cmd("P0=8877665544332211") == "OK"
    assert c.cmd("p0") == "8877665544332211"
    assert c.cmd("P12=10000000") == "OK"        # cs unchanged: accepted
    assert c.cmd("P12=08000000") == "E01"       # a selector alone cannot change
    assert c.cmd("P11=00") == "E01"             # eflags is 4 bytes
    assert c.cmd("P39=00000000") == "E01"       # no register 57
    assert c.cmd("p38") != "E01" and c.cmd("p39") == "E01"
    _, g2 = c.regs()
    assert c.cmd("G" + g2.hex()) == "OK"
    assert c.regs()[1] == g2
    assert c.cmd("P0=0000000000000000") == "OK"
    assert c.cmd("D") == "OK"
    assert_done(k, k.finish())


@pytest.mark.parametrize("seccomp", [True, False])
def test_sse_registers_and_seccomp(start, target_elf, seccomp):
    """xmm0 is written with KVM_SET_FPU, which the seccomp filter allows (the
    debugger may change any register with or without it). A G packet with the same
    x87/SSE state writes the general registers only."""
    k = start(target_elf, *([] if seccomp else ["--no-seccomp"]))
    c = Rsp(k.addr)
    value = bytes(range(16)).hex()
    assert c.cmd(f"P28={value}") == "OK"
    assert c.cmd("p28") == value
    _, g = c.regs()
    assert c.cmd("G" + g.hex()) == "OK"
    assert c.regs()[1] == g
    assert c.cmd("D") == "OK"
    assert_done(k, k.finish())


def test_memory_through_the_page_tables(start, target_elf, sym):
    """m/M/X at guest-virtual addresses (the guest's identity map of 2 MiB pages);
    addresses the tables do not map, or that map outside RAM, fail with E14."""
    k = start(target_elf, "--mem", "64")
    c = Rsp(k.addr)
    assert c.read(sym["_start"], 3) == b"\x48\x89\x35"  # mov %rsi, boot_params_gpa(%rip)
    assert c.read(sym["counter"], 8) == bytes(8)
    assert c.cmd(f"M{sym['counter']:x},8:0102030405060708") == "OK"
    assert c.read(sym["counter"], 8) == bytes(range(1, 9))
    data = b"#$}*\x03\x00\xff+"
    esc = b"".join(b"}" + bytes([x ^ 0x20]) if x in b"#$}*" else bytes([x]) for x in data)
    assert c.cmd(b"X%x,8:" % sym["counter"] + esc) == "OK"
    assert c.read(sym["counter"], 8) == data
    assert c.cmd(f"X{sym['counter']:x},0:") == "OK"  # gdb's probe for X
    assert c.cmd(f"M{sym['counter']:x},8:0000000000000000") == "OK"
    assert c.cmd("m80000000,4") == "E14"              # mapped by the tables, above RAM
    assert c.cmd("m200000000,4") == "E14"             # beyond the 4 GiB identity map
    assert c.cmd("m800000000000,4") == "E14"          # not canonical
    assert c.cmd("M80000000,1:00") == "E14"
    # A read running off the end of RAM returns what is there.
    assert len(c.read(64 * 1024 * 1024 - 2, 4)) == 2
    assert c.cmd("D") == "OK"
    assert_done(k, k.finish())


def test_single_step_and_instruction_breakpoint(start, target_elf, sym):
    k = start(target_elf)
    c = Rsp(k.addr)
    assert c.cmd("vCont?") == "vCont;c;C;s;S;t"
    c.cmd("vCont;s:1", reply=False)
    assert c.packet() == b"T05thread:1;"
    rip = c.regs()[0]["rip"]
    assert sym["_start"] < rip < sym["_start"] + 16  # one instruction
    c.cmd("s", reply=False)
    assert c.packet() == b"T05thread:1;"
    assert c.regs()[0]["rip"] > rip
    assert c.cmd(f"Z1,{sym['add']:x},1") == "OK"
    c.cmd("vCont;c", reply=False)
    assert c.packet() == b"T05thread:1;hwbreak:;"
    assert c.cmd("?") == "T05thread:1;hwbreak:;"  # the last stop, again
    regs, _ = c.regs()
    assert regs["rip"] == sym["add"] and regs["rdi"] == 2
    assert c.cmd(f"z1,{sym['add']:x},1") == "OK"
    c.cmd("c", reply=False)
    assert c.packet() == b"W00"
    assert_done(k, k.finish())


def test_debug_registers_are_shared_out(start, target_elf, sym):
    """Watchpoints take naturally aligned 1/2/4/8-byte pieces of the four debug
    registers; a request that does not fit is refused, and freeing one makes room."""
    k = start(target_elf)
    c = Rsp(k.addr)
    assert c.cmd(f"Z2,{sym['watched']:x},4") == "OK"      # DR0
    assert c.cmd(f"Z4,{sym['counter']:x},8") == "OK"      # DR1
    assert c.cmd(f"Z3,{sym['go'] + 1:x},3") == "OK"       # 1 + 2 bytes: DR2, DR3
    assert c.cmd(f"Z1,{sym['add']:x},1") == "E01"          # none left
    assert c.cmd(f"Z2,{sym['watched']:x},4") == "OK"      # the same one again is no new slot
    assert c.cmd(f"z3,{sym['go'] + 1:x},3") == "OK"
    assert c.cmd(f"Z2,{sym['spins']:x},20") == "E01"      # 32 bytes: 4 pieces, 2 left
    assert c.cmd(f"Z1,{sym['add']:x},1") == "OK"
    assert c.cmd("Z2,0,0") == "E01"                       # empty range
    c.cmd("vCont;c", reply=False)
    assert c.packet() == b"T05thread:1;hwbreak:;"
    assert c.cmd("D") == "OK"                             # clears them all
    assert_done(k, k.finish())


def test_threads_are_vcpus(start, target_elf):
    k = start(target_elf, "--cpus", "2")
    c = Rsp(k.addr)
    assert c.cmd("qSupported:multiprocess+;swbreak+;hwbreak+") == "PacketSize=1000;swbreak+;hwbreak+"
    assert c.cmd("qfThreadInfo") == "m1,2"
    assert c.cmd("qsThreadInfo") == "l"
    assert c.cmd("qC") == "QC1"
    assert c.cmd("qAttached") == "1"
    assert c.cmd("T2") == "OK" and c.cmd("T1") == "OK"
    assert c.cmd("T3") == "E01" and c.cmd("T0") == "E01"
    assert bytes.fromhex(c.cmd("qThreadExtraInfo,2")) == b"vCPU 1"
    assert c.cmd("Hg2") == "OK"
    ap, _ = c.regs()
    assert ap["rip"] == 0xFFF0 and ap["cs"] == 0xF000  # waiting for its SIPI at the reset vector
    assert c.cmd("Hg1") == "OK"
    assert c.regs()[0]["rip"] != 0xFFF0
    assert c.cmd("Hg3") == "E01" and c.cmd("Hc-1") == "OK" and c.cmd("Hg0") == "OK"
    c.cmd("vCont;c", reply=False)
    assert c.packet() == b"W00"
    assert_done(k, k.finish())


def test_thread_list_of_many_vcpus(start, target_elf):
    k = start(target_elf, "--cpus", "100")
    c = Rsp(k.addr)
    assert c.cmd("qfThreadInfo") == "m" + ",".join(f"{i:x}" for i in range(1, 101))
    assert c.cmd("T64") == "OK" and c.cmd("T65") == "E01"
    c.cmd("vCont;c", reply=False)
    assert c.packet() == b"W00"
    assert_done(k, k.finish())


def test_malformed_packets_are_answered_and_kite_runs_on(start, target_elf, sym):
    k = start(target_elf)
    c = Rsp(k.addr)
    c.send(b"$?#00")                      # bad checksum
    assert c.ack() == b"-"
    c.send(b"$?#zz")                      # not hex
    assert c.ack() == b"-"
    c.send(b"garbage \x00\xff\r\n between packets")
    assert c.cmd("?") == "T05thread:1;"   # ignored
    long = b"m" * 5000                    # longer than PacketSize
    c.send(frame(long))
    assert c.ack() == b"+" and c.packet() == b"E01"
    c.send(frame(b"?}"))                  # ends in an escape
    assert c.ack() == b"+" and c.packet() == b"E01"
    c.send(b"$qC$qC#b4")                  # a restarted packet: the second one counts
    assert c.ack() == b"+" and c.packet() == b"QC1"
    for bad in ["mzz,4", "m100000", "m100000,", "m11111111111111111,4", "m100000,4x",
                "M100000,2:zz", "M100000,2:00", "M100000,2", "X100000,4:ab",
                "Z9,100000,1", "Z0,100000", "Z0", "z1,zz,1", "P", "Pzz=00", "P0=zz",
                "G00", "Hx1", "Hg5", "Hgzz", "T", "Tzz", "g1", "p", "vCont;x", "vCont;",
                "vCont;c:0", "vCont;c:9", "vCont;Czz", "C", "S;", "czz", "qThreadExtraInfo,9"]:
        assert c.cmd(bad) == "E01", bad
    for unknown in ["Qfoo", "qfoo", "vFoo", "vMustReplyEmpty", "!", "R00", "i", "bc", "x"]:
        assert c.cmd(unknown) == "", unknown
    assert c.cmd("m1000ffffffff0000,4") == "E14"
    # A '-' asks for the last packet again.
    assert c.cmd("qC") == "QC1"
    c.send(b"-")
    assert c.packet() == b"QC1"
    # Still serving: a register read and a normal end.
    assert c.regs()[0]["rip"] == sym["_start"]
    assert c.cmd("D") == "OK"
    assert_done(k, k.finish())


def test_one_debugger_at_a_time(start, target_elf):
    k = start(target_elf)
    first = Rsp(k.addr)
    assert first.cmd("?") == "T05thread:1;"
    second = Rsp(k.addr)
    with pytest.raises(EOFError):
        second.byte()  # closed at once
    k.wait_err(r"gdb: refused a second debugger connection")
    assert first.cmd("qC") == "QC1"
    assert first.cmd("D") == "OK"
    assert_done(k, k.finish())


def test_dropped_connection_lets_the_guest_run_on(start, target_elf, sym):
    """A debugger that vanishes without detaching: breakpoints come out and the
    guest finishes."""
    k = start(target_elf)
    c = Rsp(k.addr)
    assert c.cmd(f"Z1,{sym['after_int3']:x},1") == "OK"
    c.close()
    k.wait_err(r"gdb: the debugger closed the connection")
    assert_done(k, k.finish())


def test_reconnect_stops_the_guest_again(start, target_elf, sym):
    k = start(target_elf, "--cmdline", "spin")
    c = Rsp(k.addr)
    assert c.cmd("D") == "OK"
    c.close()
    k.wait_err(r"guest: gdb_target: spinning")
    c = Rsp(k.addr)  # a new debugger stops the running guest
    assert c.cmd("?") == "T05thread:1;"
    regs, _ = c.regs()
    assert sym["_start"] <= regs["rip"] < sym["_start"] + 0x1000, hex(regs["rip"])
    assert c.cmd(f"M{sym['go']:x},4:01000000") == "OK"
    c.cmd("vCont;c", reply=False)
    assert c.packet() == b"W00"
    assert_done(k, k.finish())


def test_exit_code_of_a_failing_guest_reaches_gdb(start, guests):
    k = start(guests / "assert_fail.elf")
    c = Rsp(k.addr)
    c.cmd("c", reply=False)
    assert c.packet() == b"W06"
    assert k.finish() == 6


def test_kill_stops_the_vm(start, target_elf):
    k = start(target_elf)
    c = Rsp(k.addr)
    c.send(frame(b"k"))
    assert c.ack() == b"+"
    assert k.finish() == 0
    assert "killed by the debugger" in k.stderr()
    assert DONE not in k.err


def test_signal_while_waiting_for_a_debugger(start, target_elf):
    k = start(target_elf)
    k.proc.send_signal(signal.SIGTERM)
    assert k.finish() == 128 + signal.SIGTERM


# ---- command line ----

@pytest.mark.parametrize("addr", ["1234", "tcp:", "tcp:1234", "tcp::1234", "tcp:127.0.0.1:",
                                  "tcp:127.0.0.1:65536", "tcp:127.0.0.1:12a", "tcp:[::1:1234",
                                  "unix:", "udp:127.0.0.1:1234", "unix:" + "x" * 108])
def test_bad_gdb_address_is_a_usage_error(kite, target_elf, addr):
    r = run([kite, "run", "--kernel", target_elf, "--gdb", addr])
    assert r.returncode == 2
    lines = r.stderr.splitlines()
    assert lines == [f"kite: error: --gdb '{addr}': expected " +
                     ("unix:PATH with a path of 1 to 107 bytes" if addr.startswith("unix:")
                      else "tcp:HOST:PORT or unix:PATH") + " (see 'kite --help')"], r.stderr


def test_gdb_port_in_use(kite, target_elf):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        r = run([kite, "run", "--kernel", target_elf, "--gdb", f"tcp:127.0.0.1:{port}"])
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        f"kite: error: gdb: listen on tcp:127.0.0.1:{port}: Address already in use"], r.stderr


def test_gdb_unix_socket_path_taken(kite, target_elf, tmp_path):
    taken = tmp_path / "taken"
    taken.write_text("")
    r = run([kite, "run", "--kernel", target_elf, "--gdb", f"unix:{taken}"])
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        f"kite: error: gdb: listen on unix:{taken}: Address already in use"], r.stderr
    assert taken.read_text() == ""  # not removed

"""The gdb stub against a real Linux guest on SVM, in the nested lab: gdb itself
runs inside the outer VM.

Debian's kernel (no symbols: its vmlinuz is stripped) with 2 vCPUs: gdb connects
to the parked guest and continues; once the kernel prints its banner, Ctrl-C
(SIGINT to gdb) stops it in kernel code (rip >= 0xffffffff80000000); gdb reads
the registers, reads memory at rip through the kernel's page tables,
single-steps, continues; once init waits in its shell, a second Ctrl-C and a
detach; the guest then runs a command typed on its console and reboots.

Every wait is for a marker with a bound; a scenario that misses one says so and
kills its processes, so the lab never hangs on it.

What the lab cannot show: breakpoints firing. QEMU's TCG, which emulates the
SVM CPU, raises a guest's INT3 as a software interrupt and checks only the INTn
intercept, never the #BP exception intercept KVM sets for
KVM_GUESTDBG_USE_SW_BP, and data breakpoints did not fire in nested guests
either. Breakpoint logic is covered by tests/unit/test_gdb_bp.c and
test_gdb_exit.c, hardware instruction breakpoints by tests/integration/test_gdb.py.

gdb (Debian's, with its libraries, via run-lab.sh --bin) needs its Python `gdb`
module (/usr/share/gdb) and the few standard-library modules that imports: those
are copied in (PYTHONHOME, -data-directory).
"""
import os
import re
import shutil
import subprocess
import sys
import sysconfig

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
KERNEL_BASE = 0xFFFFFFFF80000000

SCRIPT = r'''
wait_for() { # FILE PATTERN SECONDS
	i=0; while ! grep -q "$2" "$1" 2>/dev/null; do i=$((i+1)); [ $i -gt $(($3*10)) ] && return 1; sleep 0.1; done
}
# ctrl_c N: Ctrl-C for gdb until it reports its Nth SIGINT stop. A SIGINT that
# lands while gdb is between sending vCont and waiting for the reply can be
# lost, so it is repeated (at most 10 times, each after 10 s without a report).
ctrl_c() {
	for try in 1 2 3 4 5 6 7 8 9 10; do
		kill -INT $gpid
		i=0
		while [ $(grep -c 'received signal SIGINT' /tmp/gdb.out) -lt $1 ]; do
			i=$((i+1)); [ $i -gt 100 ] && break; sleep 0.1
		done
		[ $(grep -c 'received signal SIGINT' /tmp/gdb.out) -ge $1 ] && { echo "interrupt-$1 tries=$try"; return 0; }
	done
	return 1
}
export PYTHONHOME=$LAB_EXTRA/gdb-python
echo "=== BEGIN linux"
mkfifo /tmp/console-in
exec 3<>/tmp/console-in
kite run --kernel "$LAB_KERNEL" --initrd "$LAB_INITRD" --cpus 2 --level debug \
	--gdb tcp:127.0.0.1:1240 --cmdline "$LINUX_ARGS" </tmp/console-in >/tmp/linux.out 2>/tmp/linux.err &
kpid=$!
if wait_for /tmp/linux.err "waits for a debugger" 60; then
	# gdb itself in the background, no wrapper: $! must be gdb's pid, for the SIGINTs
	gdb -data-directory "$LAB_EXTRA/gdb-data" -nx -batch -ex 'set pagination off' -ex 'set architecture i386:x86-64' \
		-ex 'set debug remote 1' -ex 'target remote 127.0.0.1:1240' -ex 'info threads' \
		-ex 'echo GDB-GO-1\n' -ex continue \
		-ex 'p/x $pc' -ex 'info registers rip rsp cs' -ex 'x/16xb $pc' -ex 'x/2i $pc' \
		-ex stepi -ex 'p/x $pc' -ex 'info threads' \
		-ex 'echo GDB-GO-2\n' -ex continue \
		-ex 'p/x $pc' -ex 'info threads' -ex detach >/tmp/gdb.out 2>/tmp/gdb.log &
	gpid=$!
	wait_for /tmp/gdb.out GDB-GO-1 120 && wait_for /tmp/linux.out "Linux version" 300 && ctrl_c 1
	wait_for /tmp/gdb.out GDB-GO-2 300 && wait_for /tmp/linux.out "KITE-GUEST: action shell" 600 && ctrl_c 2
	wait_for /tmp/gdb.out "Remote target) detached" 120 || {
		echo "gdb-stuck"; kill -9 $gpid
		echo "gdb's packet log:"; grep -v 'Packet received: [0-9a-f]\{64\}' /tmp/gdb.log | tail -40
	}
	wait $gpid; echo "gdb-rc $?"
	cat /tmp/gdb.out
	# the guest runs on: its shell answers the console, then reboots
	echo 'echo KITE-GDB: after-detach $((40+2)); exit' >&3
	wait_for /tmp/linux.out "KITE-GDB: after-detach 42" 300 || { echo "guest-stuck"; kill -9 $kpid; }
else
	echo "no-stub"; kill -9 $kpid
fi
wait $kpid; echo "kite-rc $?"
grep -E 'KITE-GUEST|KITE-GDB|Linux version' /tmp/linux.out
grep -v 'debug: .* at [0-9]* us' /tmp/linux.err
echo "=== END linux"
'''

LINUX_ARGS = "console=ttyS0 reboot=k panic=1 loglevel=6 kite.action=shell"


def gdb_python(dest):
    """gdb's data directory (its Python `gdb` module) and the smallest Python home
    it loads with: the modules gdb on this host reports missing, one at a time,
    starting from `encodings`."""
    shutil.copytree("/usr/share/gdb", dest / "gdb-data")
    out = subprocess.run(["ldd", shutil.which("gdb")], capture_output=True, text=True).stdout
    m = re.search(r"libpython(\d+\.\d+)", out)
    assert m, "gdb is not linked against libpython:\n" + out
    stdlib = os.path.join(os.path.dirname(sysconfig.get_paths()["stdlib"]), f"python{m.group(1)}")
    lib = dest / "gdb-python" / "lib" / f"python{m.group(1)}"
    lib.mkdir(parents=True)
    missing = "encodings"
    for _ in range(100):
        top = missing.split(".")[0]
        src = os.path.join(stdlib, top)
        if os.path.isdir(src):
            shutil.copytree(src, lib / top, ignore=shutil.ignore_patterns("__pycache__", "test*"))
        else:
            shutil.copy(src + ".py", lib / (top + ".py"))
        r = subprocess.run(["gdb", "-nx", "-batch", "-data-directory", str(dest / "gdb-data"),
                            "-ex", "python print('py-ok')"], capture_output=True, text=True,
                           env={**os.environ, "PYTHONHOME": str(dest / "gdb-python")})
        m = re.search(r"No module named '([^']+)'", r.stdout + r.stderr)
        if not m:
            assert "py-ok" in r.stdout, r.stdout + r.stderr
            return
        missing = m.group(1)
    pytest.fail("gdb's Python keeps missing modules")


@pytest.fixture(scope="session")
def lab_gdb(tmp_path_factory):
    if not shutil.which("gdb"):
        pytest.skip("gdb is not installed")
    subprocess.run(["make", "-s", "-C", REPO, "all"], check=True)
    tmp = tmp_path_factory.mktemp("labgdb")
    gdb_python(tmp)
    script = tmp / "gdb.sh"
    script.write_text(SCRIPT)
    cmd = [os.path.join(REPO, "tests/lab/run-lab.sh"), "--kite", os.path.join(REPO, "build/kite"),
           "--bin", "gdb", "--extra", str(tmp / "gdb-python"), "--extra", str(tmp / "gdb-data"),
           "--env", "LINUX_ARGS=" + LINUX_ARGS,
           "--script", str(script), "--timeout", "1500"]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=1600)
    out = proc.stdout.decode(errors="replace").replace("\r", "")
    sys.stderr.write(out[-6000:])
    assert "LAB: ready" in out, "the outer VM did not come up:\n" + out[-2000:]
    return {m.group(1): m.group(2) for m in re.finditer(r"=== BEGIN (\S+)\n(.*?)=== END \1", out, re.S)}


def section(lab, name):
    assert name in lab, f"scenario {name} did not finish in the lab"
    return lab[name]


def values(text):
    return [m.group(1) for m in re.finditer(r"^\$\d+ = (.*)$", text, re.M)]


def test_linux_interrupt_registers_memory_step_detach(lab_gdb):
    t = section(lab_gdb, "linux")
    assert re.search(r"^interrupt-1 tries=\d+$", t, re.M) and re.search(r"^interrupt-2 tries=\d+$", t, re.M), t
    assert "gdb-stuck" not in t and "guest-stuck" not in t, t
    assert re.search(r"Thread 1 \(vCPU 0\).*\n.*Thread 2 \(vCPU 1\)", t), t
    first, second = t.split("GDB-GO-2", 1)
    # the stop names the boot vCPU, which runs the kernel (not the AP gdb listed last)
    assert "Thread 1 received signal SIGINT, Interrupt." in first, t
    assert "Python Exception" not in t, t
    v = values(t)
    pc = int(v[0], 16)
    assert pc >= KERNEL_BASE, t
    # registers: rip as printed matches $pc; cs is the kernel's code segment
    assert re.search(r"^rip\s+0x0*%x" % pc, t, re.M), t
    assert re.search(r"^cs\s+0x10\s", t, re.M), t
    # 16 bytes at rip, read through the kernel's page tables
    m = re.search(r"^0x0*%x[^:]*:((?:\s+0x[0-9a-f]{2}){8})\n0x[0-9a-f]+[^:]*:((?:\s+0x[0-9a-f]{2}){8})$" % pc, t, re.M)
    assert m, t
    assert "Cannot access memory" not in t, t
    # one instruction later, still in the kernel: where the code read through
    # the page tables says, i.e. the next instruction or, for a branch, its target
    stepped = int(v[1], 16)
    assert stepped >= KERNEL_BASE, t
    insns = re.findall(r"^(?:=>)?\s+0x([0-9a-f]+)[^:]*:\s+(\S+)\s*(.*)$", first, re.M)
    assert len(insns) >= 2 and int(insns[0][0], 16) == pc, t
    (_, op, args), nxt = insns[0], int(insns[1][0], 16)
    target = re.match(r"(?:\*)?0x([0-9a-f]+)", args)
    if op.startswith("rep"):
        assert stepped in (pc, nxt), t  # one iteration, or the last one
    elif op.startswith("j") or op.startswith("call"):
        if target and not args.startswith("*"):
            assert stepped in (nxt, int(target.group(1), 16)), t
    elif not re.match(r"(ret|iret|sysret|lret|int|ud2|hlt|syscall)", op):
        assert stepped == nxt, t
    else:
        assert stepped != pc, t
    # the second stop, while init's shell starts: rip may be the kernel's or init's
    assert re.search(r"Thread \d received signal SIGINT, Interrupt.", second), t
    assert "[Inferior 1 (Remote target) detached]" in t, t
    assert "gdb-rc 0" in t, t
    # after the detach the guest runs on: its shell ran the command, then it rebooted
    assert "KITE-GDB: after-detach 42" in t, t
    assert "kite-rc 0" in t, t
    assert "guest reset (i8042)" in t, t

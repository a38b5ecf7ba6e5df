"""`kite jail`: every refused input is one `kite jail: error:` line with its documented
exit code (2 usage, 7 jail exists, 8 no usable cgroup v2, 1 a failed system call) and
leaves nothing behind; then real jails on this host: a static kite in its chroot, as
123:100 with no capabilities, only stdio inherited, an empty environment, rlimits,
the device nodes it needs, booting a test guest through its API socket; with
--new-pid-ns, --daemonize, --netns and a cgroup v2 setting.

The jailed runs need root with mount namespaces, pivot_root and mknod (probed once;
skipped with the probe's reason otherwise). The nested-SVM lab covers a real Linux
guest, cpu.max and memory.max (tests/lab/test_lab_jailer.py)."""
import os
import shutil
import signal
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from kiteapi import http_request, wait_for
from kitetest import REPO, needs_kvm, run

UID, GID = 123, 100
HELLO_LINE = "hello from a kite test guest\n"


# ---------------------------------------------------------------- fixtures ----

@pytest.fixture(scope="session")
def static_kite(kite):
    """kite linked statically (a jail has no loader or libraries), from the objects
    `make` builds (run here too: KITE=... skips the session's make)."""
    subprocess.run(["make", "-s"], cwd=REPO, check=True, capture_output=True)
    objs = [REPO / "build" / "obj" / p.with_suffix(".o") for p in sorted((REPO / "src").rglob("*.c"))
            for p in [p.relative_to(REPO)]]
    out = REPO / "build" / "kite-static"
    libs = subprocess.run(["make", "-s", "--no-print-directory", "--eval", "print-ldlibs: ; @echo $(LDLIBS)",
                           "print-ldlibs"], cwd=REPO, check=True, capture_output=True, text=True).stdout.split()
    r = subprocess.run(["cc", "-static-pie", "-Wl,-z,noexecstack", "-Wl,-z,relro", "-Wl,-z,now", "-o", out,
                        *objs, *libs], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"linking a static kite failed:\n{r.stderr}", pytrace=False)
    return str(out)


@pytest.fixture
def base():
    """A chroot base directory that does not exist yet (short: API socket paths)."""
    d = Path(tempfile.mkdtemp(prefix="kj", dir="/tmp"))
    yield d / "jails"
    shutil.rmtree(d, ignore_errors=True)


def _probe_jail():
    """Why jails cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root"
    d = tempfile.mkdtemp(prefix="kjprobe", dir="/tmp")
    try:
        os.mknod(f"{d}/null", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
        with open(f"{d}/null", "w") as f:
            f.write("x")
        os.mkdir(f"{d}/root")
        os.mkdir(f"{d}/root/old")
        r = subprocess.run(["unshare", "--mount", "sh", "-c",
                            f"mount --make-rprivate / && mount --bind {d}/root {d}/root && "
                            f"cd {d}/root && pivot_root . old"], capture_output=True, text=True)
        if r.returncode != 0:
            return f"unshare --mount + pivot_root do not work here: {r.stderr.strip()}"
    except OSError as e:
        return f"mknod does not work here: {e}"
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return None


_why_not = _probe_jail()
needs_jail = pytest.mark.skipif(_why_not is not None, reason=f"no jails on this host: {_why_not}")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mount namespaces)")


def jail_cmd(kite, exe, base, jid="vm1", *extra, vmm=()):
    return [kite, "jail", "--id", jid, "--exec-file", exe, "--uid", str(UID), "--gid", str(GID),
            "--chroot-base-dir", str(base), *extra, "--", *vmm]


def refused(r, code, message):
    """One error line, the exit code, and the message (exact when it ends the line)."""
    assert r.returncode == code, (r.returncode, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1, f"expected one error line, got:\n{r.stderr}"
    line = lines[0]
    assert r.stdout == ""
    assert line.startswith("kite jail: error: "), line
    assert message in line, line
    return line


# ------------------------------------------------- usage errors (exit 2) ----

USAGE = [
    # id
    (["--id", "bad_id!"], "--id 'bad_id!': expected 1 to 64 letters, digits or '-'"),
    (["--id", "a" * 65], f"--id '{'a' * 65}': expected 1 to 64"),
    (["--id", ""], "--id '': expected 1 to 64"),
    (["--id", "a/b"], "--id 'a/b'"),
    (["--id", ".."], "--id '..'"),
    # uid / gid
    (["--uid", "abc"], "--uid 'abc': expected a numeric user id from 1 to 4294967294"),
    (["--uid", "-1"], "--uid '-1'"),
    (["--uid", "0"], "--uid '0'"),
    (["--uid", "4294967295"], "--uid '4294967295'"),
    (["--uid", "99999999999999999999999"], "--uid '99999999999999999999999'"),
    (["--uid", ""], "--uid ''"),
    (["--uid", "12x"], "--uid '12x'"),
    (["--gid", "staff"], "--gid 'staff': expected a numeric group id from 0 to 4294967294"),
    # flags
    (["--frobnicate"], "unknown option '--frobnicate'"),
    (["--frobnicate=1"], "unknown option '--frobnicate'"),
    (["-x"], "unknown option '-x'"),
    (["stray"], "unexpected argument 'stray' (kite's own arguments go after '--')"),
    (["--daemonize=yes"], "option '--daemonize' does not take a value"),
    (["--id", "a", "--id", "b"], "option '--id' given twice"),
    (["--netns", ""], "--netns '': expected the path"),
    (["--chroot-base-dir", "relative/dir"], "--chroot-base-dir 'relative/dir': expected an absolute path"),
    (["--exec-file", "x", "--exec-file", "y"], "option '--exec-file' given twice"),
    # cgroups
    (["--cgroup", "cpumax=5"], "--cgroup 'cpumax=5': expected FILE=VALUE with FILE a cgroup file like cpu.max"),
    (["--cgroup", "cpu.max"], "--cgroup 'cpu.max': expected FILE=VALUE"),
    (["--cgroup", "=5"], "--cgroup '=5': expected FILE=VALUE"),
    (["--cgroup", ".max=5"], "--cgroup '.max=5'"),
    (["--cgroup", "cpu.=5"], "--cgroup 'cpu.=5'"),
    (["--cgroup", "cpu..max=5"], "--cgroup 'cpu..max=5'"),
    (["--cgroup", "../cpu.max=5"], "--cgroup '../cpu.max=5'"),
    (["--cgroup", "cpu/x.max=5"], "--cgroup 'cpu/x.max=5'"),
    (["--cgroup", "cpu.max="], "--cgroup 'cpu.max=': expected a one-line value of 1 to 256 characters"),
    (["--cgroup", "cpu.max=1\n2"], "--cgroup 'cpu.max=1?2': expected a one-line value"),
    (["--cgroup", "cgroup.procs=1"], "--cgroup 'cgroup.procs=1': the jailer manages that file itself"),
    (["--cgroup", "pids.max=5", "--cgroup", "pids.max=6"], "--cgroup 'pids.max=6': that file is set twice"),
    (["--cgroup-version", "1"], "--cgroup-version '1': cgroup v1 is not supported, only 2"),
    (["--cgroup-version", "3"], "--cgroup-version '3': expected 2"),
    (["--parent-cgroup", "../up"], "--parent-cgroup '../up': expected a relative path of names"),
    (["--parent-cgroup", "/abs"], "--parent-cgroup '/abs'"),
    (["--parent-cgroup", "a//b"], "--parent-cgroup 'a//b'"),
    (["--parent-cgroup", ""], "--parent-cgroup ''"),
    # resource limits
    (["--resource-limit", "nproc=5"], "--resource-limit 'nproc=5': expected fsize=N or no-file=N"),
    (["--resource-limit", "fsize"], "--resource-limit 'fsize': expected fsize=N or no-file=N"),
    (["--resource-limit", "fsize=abc"], "--resource-limit 'fsize=abc': expected fsize=BYTES"),
    (["--resource-limit", "fsize=-1"], "--resource-limit 'fsize=-1'"),
    (["--resource-limit", "no-file=0"], "--resource-limit 'no-file=0': expected no-file=N with N from 1 to 1073741824"),
    (["--resource-limit", "no-file=1073741825"], "--resource-limit 'no-file=1073741825'"),
    (["--resource-limit", "no-file=5", "--resource-limit", "no-file=6"], "no-file is set twice"),
]


@pytest.mark.parametrize("extra, message", USAGE)
def test_usage_errors(kite, base, tmp_path, extra, message):
    # A valid command line (flags checked for form only, so the exec file need not
    # exist) with one thing broken by the extra arguments, which replace a flag of
    # the same name.
    good = {"--id": "a", "--exec-file": "/nonexistent", "--uid": "123", "--gid": "100",
            "--chroot-base-dir": str(base)}
    cmd = [kite, "jail", *[x for k, v in good.items() if k not in extra for x in (k, v)], *extra]
    r = run(cmd)
    line = refused(r, 2, message)
    assert line.endswith("(see 'kite jail --help')")
    assert not base.exists()


@pytest.mark.parametrize("missing", ["--id", "--exec-file", "--uid", "--gid"])
def test_required_flags(kite, base, missing):
    args = {"--id": "a", "--exec-file": "/x", "--uid": "1", "--gid": "1"}
    del args[missing]
    cmd = [kite, "jail", *[x for kv in args.items() for x in kv], "--chroot-base-dir", str(base)]
    refused(run(cmd), 2, f"{missing} is required")


@pytest.mark.parametrize("flag", ["--id", "--uid", "--cgroup", "--resource-limit"])
def test_flag_without_value(kite, flag):
    refused(run([kite, "jail", flag]), 2, f"option '{flag}' needs a value")


def test_double_dash_ends_the_jailer_flags(kite, base):
    # After "--" nothing is the jailer's: a bad-looking flag there is kite's business,
    # so the error is about the exec file, checked later.
    r = run(jail_cmd(kite, "/nonexistent/kite", base, vmm=["--frobnicate", "--id", "x!"]))
    refused(r, 2, "--exec-file '/nonexistent/kite': No such file or directory")


def test_too_many_arguments_for_kite(kite, base):
    r = run(jail_cmd(kite, "/nonexistent/kite", base, vmm=["--x"] * 257))
    refused(r, 2, "too many arguments after '--': at most 256")
    # 256 are fine as far as the jailer's command line goes (the exec file is next)
    r = run(jail_cmd(kite, "/nonexistent/kite", base, vmm=["--x"] * 256))
    refused(r, 2, "--exec-file '/nonexistent/kite'")


def test_help(kite):
    r = run([kite, "jail", "--help"])
    assert r.returncode == 0 and r.stderr == ""
    assert r.stdout.startswith("usage: kite jail --id ID --exec-file PATH --uid UID --gid GID")


def test_main_usage_mentions_jail(kite):
    assert "kite jail --id ID" in run([kite, "--help"]).stdout


# ------------------------------------------------------ the exec file (2) ----

def test_exec_file_missing(kite, base):
    refused(run(jail_cmd(kite, "/nonexistent/kite", base)), 2,
            "--exec-file '/nonexistent/kite': No such file or directory")
    assert not base.exists()


def test_exec_file_is_a_directory(kite, base, tmp_path):
    refused(run(jail_cmd(kite, tmp_path, base)), 2, f"--exec-file '{tmp_path}': not a regular file")


def test_exec_file_not_executable(kite, base, tmp_path, static_kite):
    p = tmp_path / "kite"
    shutil.copy(static_kite, p)
    p.chmod(0o644)
    refused(run(jail_cmd(kite, p, base)), 2, f"--exec-file '{p}': not executable")


def test_exec_file_not_elf(kite, base, tmp_path):
    p = tmp_path / "kite.sh"
    p.write_text("#!/bin/sh\nexit 0\n")
    p.chmod(0o755)
    refused(run(jail_cmd(kite, p, base)), 2, f"--exec-file '{p}': not an x86-64 ELF executable")


def test_exec_file_dynamically_linked(kite, base):
    # build/kite itself is dynamic: it would find no loader in the jail.
    line = refused(run(jail_cmd(kite, kite, base)), 2, f"--exec-file '{kite}': dynamically linked")
    assert "use a static build" in line
    assert not base.exists()


def test_netns_missing(kite, base, static_kite):
    refused(run(jail_cmd(kite, static_kite, base, "vm1", "--netns", "/nonexistent/ns")), 2,
            "--netns '/nonexistent/ns': No such file or directory")
    assert not base.exists()


def test_netns_not_a_network_namespace(kite, base, static_kite):
    refused(run(jail_cmd(kite, static_kite, base, "vm1", "--netns", "/etc/hostname")), 2,
            "--netns '/etc/hostname': not a network namespace")


# ----------------------------------------------- the jail directory (7) ----

@needs_jail
def test_existing_jail_is_refused(kite, base, static_kite):
    (base / "kite-static" / "vm1").mkdir(parents=True)
    line = refused(run(jail_cmd(kite, static_kite, base)), 7,
                   f"'{base}/kite-static/vm1' already exists: another jail uses id 'vm1', "
                   "or an old one was not cleaned up")
    assert line.endswith("not cleaned up")
    assert os.listdir(base / "kite-static" / "vm1") == []


@needs_jail
def test_nodev_chroot_base_is_refused(kite, base, static_kite):
    base.mkdir(parents=True)
    r = run(["unshare", "--mount", "sh", "-c",
             f'mount -t tmpfs -o nodev none {base} && exec "$@"', "sh",
             *jail_cmd(kite, static_kite, base)])
    refused(r, 2, f"--chroot-base-dir '{base}' is on a file system mounted nodev")


@needs_jail
def test_host_without_tun(kite, base, static_kite):
    r = run(["unshare", "--mount", "sh", "-c", 'mount -t tmpfs none /dev/net && exec "$@"', "sh",
             *jail_cmd(kite, static_kite, base)])
    refused(r, 1, "host device /dev/net/tun: No such file or directory (load the tun module)")
    assert not base.exists()


# ----------------------------------------------------------- cgroups (8) ----

def cgroup2_root():
    """The cgroup2 mount point, as the jailer picks it, or None."""
    found = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if right.split()[0] == "cgroup2":
                mnt = left.split()[4]
                if found is None or mnt == "/sys/fs/cgroup":
                    found = mnt
    return found


def v2_controllers():
    root = cgroup2_root()
    return Path(root, "cgroup.controllers").read_text().split() if root else []


@needs_jail
def test_cgroup_v1_only_host(kite, base, static_kite):
    # A mount namespace without the cgroup2 mount is a cgroup v1 host to the jailer.
    root = cgroup2_root()
    umount = f"umount {root} && " if root else ""
    r = run(["unshare", "--mount", "sh", "-c", umount + 'exec "$@"', "sh",
             *jail_cmd(kite, static_kite, base, "vm1", "--cgroup", "memory.max=268435456")])
    refused(r, 8, "no cgroup v2 hierarchy is mounted (this host has cgroup v1 only): mount one "
                  "(mount -t cgroup2 none /sys/fs/cgroup) or drop --cgroup and --parent-cgroup")
    assert not base.exists()


@pytest.mark.skipif(cgroup2_root() is None, reason="no cgroup2 mount here")
def test_cgroup_controller_not_in_v2(kite, base, static_kite):
    missing = [c for c in ("cpu", "memory", "pids", "io", "cpuset", "hugetlb") if c not in v2_controllers()]
    if not missing:
        pytest.skip("every controller is in the cgroup v2 hierarchy here")
    c = missing[0]
    r = run(jail_cmd(kite, static_kite, base, "vm1", "--cgroup", f"{c}.max=5"))
    line = refused(r, 8, f"--cgroup '{c}.max': controller '{c}' is ")
    assert f"the cgroup v2 hierarchy at {cgroup2_root()}" in line
    assert not base.exists()


@pytest.fixture
def v2_setting():
    """A (controller, file, value, parent) this host's cgroup v2 hierarchy can take; the
    parent cgroup is removed afterwards."""
    have = v2_controllers()
    for c, f, v in (("pids", "pids.max", "64"), ("memory", "memory.max", "268435456"),
                    ("hugetlb", "hugetlb.2MB.max", "4194304")):
        if c in have:
            break
    else:
        pytest.skip("no pids, memory or hugetlb controller in a cgroup v2 hierarchy here")
    parent = f"kite-test-{os.getpid()}"
    yield c, f, v, parent
    top = Path(cgroup2_root(), parent)
    if top.exists():
        for d in sorted(top.rglob("*"), reverse=True):
            if d.is_dir():
                d.rmdir()
        top.rmdir()


@needs_jail
@pytest.mark.parametrize("bad, code, message", [
    ("nosuchfile", 2, "has no file"),
    ("badvalue", 2, "the kernel refused the value (Invalid argument)"),
])
def test_cgroup_refused_setting_leaves_nothing(kite, base, static_kite, v2_setting, bad, code, message):
    c, f, v, parent = v2_setting
    setting = f"{c}.nosuch=1" if bad == "nosuchfile" else f"{f}=notanumber"
    r = run(jail_cmd(kite, static_kite, base, "vm1", "--parent-cgroup", parent, "--cgroup", setting))
    refused(r, code, message)
    assert not base.exists()
    assert not Path(cgroup2_root(), parent, "vm1").exists()


# ------------------------------------------------------------ real jails ----

class Jail:
    """A jailer run whose kite serves its API on /api.sock inside the chroot."""

    def __init__(self, kite, exe, base, jid, *extra, vmm=("--api-sock", "/api.sock"), pass_fds=(), env=None):
        self.root = base / Path(exe).name / jid / "root"
        self.base, self.jid = base, jid
        self.out = tempfile.TemporaryFile(mode="w+")
        self.err = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen([str(c) for c in jail_cmd(kite, exe, base, jid, *extra, vmm=vmm)],
                                     stdin=subprocess.DEVNULL, stdout=self.out, stderr=self.err,
                                     pass_fds=pass_fds, env=env)
        self.sock = self.root / "api.sock"

    def wait_sock(self):
        wait_for(lambda: self.sock.exists() or self.proc.poll() is not None, what="the jailed API socket")
        assert self.sock.exists(), f"jailer exited {self.proc.returncode}: {self.stderr()}"

    def stdout(self):
        self.out.seek(0)
        return self.out.read()

    def stderr(self):
        self.err.seek(0)
        return self.err.read()

    def req(self, method, path, body=None):
        return http_request(self.sock, method, path, body)

    def boot(self, guest):
        shutil.copy(guest, self.root / "guest.elf")
        assert self.req("PUT", "/boot-source", {"kernel_image_path": "/guest.elf"}).status == 204
        assert self.req("PUT", "/actions", {"action_type": "InstanceStart"}).status == 204

    def wait(self):
        return self.proc.wait(timeout=20)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def jails():
    started = []

    def start(*a, **kw):
        j = Jail(*a, **kw)
        started.append(j)
        return j
    yield start
    for j in started:
        j.kill()


def status(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            fields[k] = v.strip()
    return fields


@needs_jail
@needs_kvm
def test_jailed_kite(kite, static_kite, base, guests, jails, tmp_path):
    secret = tmp_path / "inherited"
    secret.write_text("not for the jail")
    fd = os.open(secret, os.O_RDONLY)
    marker = Path("/kite-jail-test-marker-%d" % os.getpid())
    marker.write_text("host root")
    try:
        j = jails(kite, static_kite, base, "vm-1", pass_fds=(fd,), env={"KITE_SECRET": "x", "PATH": "/bin"})
        j.wait_sock()
        pid = j.proc.pid  # the jailer exec'd kite: same process
        # its root is the chroot, and the host's / is out of reach
        r = os.stat(f"/proc/{pid}/root")
        c = os.stat(j.root)
        assert (r.st_dev, r.st_ino) == (c.st_dev, c.st_ino)
        assert os.path.exists(f"/proc/self/root/{marker.name}")
        assert not os.path.exists(f"/proc/{pid}/root/{marker.name}")
    finally:
        os.close(fd)
        marker.unlink()
    st = status(pid)
    # unprivileged for good
    assert st["Uid"].split() == [str(UID)] * 4
    assert st["Gid"].split() == [str(GID)] * 4
    assert st["Groups"] == ""
    assert int(st["CapEff"], 16) == 0 and int(st["CapPrm"], 16) == 0
    assert st["NoNewPrivs"] == "1"
    mounts = Path(f"/proc/{pid}/mountinfo").read_text().splitlines()
    assert len(mounts) == 1 and mounts[0].split()[4] == "/", mounts  # the old root is gone
    # what it was given: its own name, --id, the args after --, no environment, stdio only
    assert Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1] == \
        [b"kite-static", b"--id", b"vm-1", b"--api-sock", b"/api.sock"]
    assert Path(f"/proc/{pid}/environ").read_bytes() == b""
    inherited = os.stat(secret)
    for n in os.listdir(f"/proc/{pid}/fd"):
        s = os.stat(f"/proc/{pid}/fd/{n}")
        assert (s.st_dev, s.st_ino) != (inherited.st_dev, inherited.st_ino), f"fd {n} crossed into the jail"
    limits = Path(f"/proc/{pid}/limits").read_text()
    assert [ln.split()[3:5] for ln in limits.splitlines() if ln.startswith("Max open files")] == [["2048", "2048"]]
    # the chroot: the exec file (a hard link: same file system), devices, run/
    assert sorted(os.listdir(j.root)) == ["api.sock", "dev", "kite-static", "run"]
    assert os.stat(j.root / "kite-static").st_ino == os.stat(static_kite).st_ino
    for name, host, mode in (("dev/kvm", "/dev/kvm", 0o660), ("dev/net/tun", "/dev/net/tun", 0o660),
                             ("dev/urandom", "/dev/urandom", 0o666)):
        s = os.stat(j.root / name)
        assert stat.S_ISCHR(s.st_mode), name
        assert s.st_rdev == os.stat(host).st_rdev, name
        assert (s.st_uid, s.st_gid, stat.S_IMODE(s.st_mode)) == (UID, GID, mode), name
    for d in ("", "run"):
        s = os.stat(j.root / d)
        assert (s.st_uid, s.st_gid) == (UID, GID), d
    assert os.stat(j.root / "dev").st_uid == 0
    # and it runs a guest
    j.boot(guests / "hello.elf")
    assert j.wait() == 0, j.stderr()
    assert j.stdout() == HELLO_LINE


@needs_jail
def test_exec_file_copied_across_file_systems(kite, static_kite, base):
    base.mkdir(parents=True)
    r = run(["unshare", "--mount", "sh", "-c",
             f'mount -t tmpfs none {base} && "$@"; ls -l {base}/kite-static/vm1/root/kite-static', "sh",
             *jail_cmd(kite, static_kite, base, "vm1", vmm=["--frobnicate"])])
    # kite itself ran (its own error), from a root-owned 0755 copy
    assert "kite: error: unknown option '--frobnicate'" in r.stderr
    assert r.stdout.startswith("-rwxr-xr-x 1 root root"), r.stdout


@needs_jail
def test_subcommand_after_double_dash_gets_no_id(kite, static_kite, base):
    r = run(jail_cmd(kite, static_kite, base, "vm1", vmm=["run", "--kernel", "/no-such-kernel"]))
    # `kite run` ran in the jail: its kernel error (4), no complaint about --id
    assert r.returncode == 4, r.stderr
    assert "/no-such-kernel" in r.stderr and "--id" not in r.stderr


@needs_jail
@needs_kvm
def test_new_pid_ns(kite, static_kite, base, guests, jails):
    j = jails(kite, static_kite, base, "pidns", "--new-pid-ns",
              "--resource-limit", "no-file=512", "--resource-limit", "fsize=1048576")
    j.wait_sock()
    pid = int((j.root / "kite-static.pid").read_text())
    assert pid != j.proc.pid
    st = status(pid)
    assert st["NSpid"].split() == [str(pid), "1"]  # pid 1 of its own namespace
    assert st["Uid"].split() == [str(UID)] * 4
    # the waiting parent dropped its privileges too
    assert status(j.proc.pid)["Uid"].split() == [str(UID)] * 4
    limits = Path(f"/proc/{pid}/limits").read_text().splitlines()
    assert [ln.split()[3:5] for ln in limits if ln.startswith("Max open files")] == [["512", "512"]]
    assert [ln.split()[3:5] for ln in limits if ln.startswith("Max file size")] == [["1048576", "1048576"]]
    j.boot(guests / "hello.elf")
    assert j.wait() == 0, j.stderr()  # kite's exit code, through the parent
    assert j.stdout() == HELLO_LINE


@needs_jail
def test_new_pid_ns_forwards_sigterm(kite, static_kite, base, jails):
    j = jails(kite, static_kite, base, "pidns2", "--new-pid-ns")
    j.wait_sock()
    pid = int((j.root / "kite-static.pid").read_text())
    j.proc.send_signal(signal.SIGTERM)
    assert j.wait() == 128 + signal.SIGTERM, j.stderr()
    assert not os.path.exists(f"/proc/{pid}")


@needs_jail
def test_daemonize(kite, static_kite, base, jails):
    j = jails(kite, static_kite, base, "daemon", "--daemonize")
    j.wait_sock()
    pid = j.proc.pid
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    assert int(fields[3]) == pid  # session id: it called setsid()
    assert [os.readlink(f"/proc/{pid}/fd/{n}") for n in (0, 1, 2)] == ["/dev/null"] * 3
    j.proc.send_signal(signal.SIGTERM)
    assert j.wait() == 128 + signal.SIGTERM
    assert j.stdout() == "" and j.stderr() == ""


@needs_jail
def test_closed_stdin_becomes_dev_null(kite, static_kite, base):
    # Started with fd 0 closed, kite would get its first own fd (the API socket)
    # as stdin; the jailer fills 0-2 with /dev/null before opening anything.
    out = tempfile.TemporaryFile()
    p = subprocess.Popen(jail_cmd(kite, static_kite, base, "nostdin", vmm=["--api-sock", "/api.sock"]),
                         stdout=out, stderr=out, close_fds=True, preexec_fn=lambda: os.close(0))
    try:
        sock = base / "kite-static" / "nostdin" / "root" / "api.sock"
        wait_for(lambda: sock.exists() or p.poll() is not None, what="the jailed API socket")
        assert os.readlink(f"/proc/{p.pid}/fd/0") == "/dev/null"
    finally:
        p.kill()
        p.wait()


@needs_jail
def test_netns(kite, static_kite, base, jails):
    name = f"kite-jail-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        j = jails(kite, static_kite, base, "net", "--netns", f"/var/run/netns/{name}")
        j.wait_sock()
        assert os.stat(f"/proc/{j.proc.pid}/ns/net").st_ino == os.stat(f"/var/run/netns/{name}").st_ino
        assert os.stat(f"/proc/{j.proc.pid}/ns/net").st_ino != os.stat("/proc/self/ns/net").st_ino
    finally:
        subprocess.run(["ip", "netns", "del", name])


@needs_jail
def test_cgroup_v2(kite, static_kite, base, jails, v2_setting):
    c, f, v, parent = v2_setting
    j = jails(kite, static_kite, base, "cg", "--parent-cgroup", f"{parent}/inner", "--cgroup", f"{f}={v}",
              "--cgroup", "cgroup.max.descendants=3")
    try:
        j.wait_sock()
        cg = Path(cgroup2_root(), parent, "inner", "cg")
        assert (cg / f).read_text().strip() == v
        assert (cg / "cgroup.max.descendants").read_text().strip() == "3"
        assert (cg / "cgroup.procs").read_text().split() == [str(j.proc.pid)]
        assert c in (cg.parent / "cgroup.subtree_control").read_text().split()
        assert Path(f"/proc/{j.proc.pid}/cgroup").read_text().splitlines()[-1] == f"0::/{parent}/inner/cg"
    finally:
        j.kill()  # before v2_setting removes the cgroups

"""kite's command line: every bad input gets its documented exit code and one
`kite: error: ...` line; the console options put the guest's output where asked;
a missing or unusable /dev/kvm is exit 3."""
import os
import re
import shutil
import struct
import subprocess

import pytest

from bzimage import bzimage, header
from kitetest import error_line, needs_kvm, run

HELLO_LINE = "hello from a kite test guest\n"


@pytest.fixture
def hello(guests):
    return guests / "hello.elf"


# ---- usage (exit 2): refused before /dev/kvm is opened ----

def test_no_arguments_prints_usage(kite):
    r = run([kite])
    assert r.returncode == 2
    assert r.stderr.startswith("usage: kite")
    assert r.stdout == ""


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version(kite, flag):
    r = run([kite, flag])
    assert r.returncode == 0
    assert re.fullmatch(r"kite v\d+\.\d+\.\d+\n", r.stdout), r.stdout
    assert r.stderr == ""


@pytest.mark.parametrize("args", [["--help"], ["-h"], ["run", "--help"]])
def test_help(kite, args):
    r = run([kite, *args])
    assert r.returncode == 0
    assert r.stdout.startswith("usage: kite")
    assert "--kernel" in r.stdout
    assert r.stderr == ""


@pytest.mark.parametrize("args, message", [
    (["--frobnicate"], "unknown option '--frobnicate'"),
    (["frobnicate"], "unknown command 'frobnicate'"),
    (["run", "--kernel", "k", "--frobnicate"], "unknown option '--frobnicate'"),
    (["run", "--kernel", "k", "extra"], "unexpected argument 'extra'"),
    (["run"], "--kernel is required"),
    (["run", "--cpus", "2"], "--kernel is required"),
    (["run", "--kernel"], "option '--kernel' needs a value"),
    (["run", "--kernel", "k", "--mem"], "option '--mem' needs a value"),
    (["run", "--kernel", "k", "--cpus", "0"], "--cpus '0'"),
    (["run", "--kernel", "k", "--cpus", "abc"], "--cpus 'abc'"),
    (["run", "--kernel", "k", "--cpus", "-1"], "--cpus '-1'"),
    (["run", "--kernel", "k", "--cpus", "4294967296"], "--cpus '4294967296'"),
    (["run", "--kernel", "k", "--cpus", ""], "--cpus ''"),
    (["run", "--kernel", "k", "--mem", "0"], "--mem '0'"),
    (["run", "--kernel", "k", "--mem", "1"], "--mem '1'"),
    (["run", "--kernel", "k", "--mem", "-5"], "--mem '-5'"),
    (["run", "--kernel", "k", "--mem", "99999999999"], "--mem '99999999999'"),
    (["run", "--kernel", "k", "--mem", "99999999999999999999999"], "--mem '99999999999999999999999'"),
    (["run", "--kernel", "k", "--mem", "1048577"], "--mem '1048577'"),
    (["run", "--kernel", "k", "--mem", "12M"], "--mem '12M'"),
    (["run", "--kernel", "k", "--serial", ""], "--serial ''"),
    (["run", "--kernel", "k", "--level", "loud"], "--level 'loud'"),
])
def test_usage_errors(kite, tmp_path, args, message):
    # Usage is checked before anything is opened: "k" need not exist.
    r = run([kite, *args], cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    line = error_line(r)
    assert message in line
    assert line.endswith("(see 'kite --help')")


# glibc's getopt_long sets optopt for these too; they are not missing values.
@pytest.mark.parametrize("args", [["run", "--kernel", "k", "-x"], ["run", "--kernel", "k", "-xyz"]])
def test_unknown_short_option(kite, tmp_path, args):
    r = run([kite, *args], cwd=tmp_path)
    assert r.returncode == 2
    assert error_line(r) == "kite: error: unknown option '-x' (see 'kite --help')"


def test_value_for_a_flag_without_value(kite, tmp_path):
    r = run([kite, "run", "--kernel", "k", "--boot-timer=1"], cwd=tmp_path)
    assert r.returncode == 2
    assert error_line(r) == "kite: error: option '--boot-timer' does not take a value (see 'kite --help')"


@needs_kvm
def test_cpus_beyond_what_kvm_allows(kite, hello):
    r = run([kite, "run", "--kernel", hello, "--cpus", "100000"])
    assert r.returncode == 2
    assert re.search(r"--cpus 100000 out of range: this host's KVM allows 1 to \d+", error_line(r))


# ---- kernel and initrd problems (exit 4) ----

@needs_kvm
def test_kernel_missing(kite, tmp_path):
    path = tmp_path / "nope" / "vmlinux"
    r = run([kite, "run", "--kernel", path])
    assert r.returncode == 4
    assert error_line(r) == f"kite: error: kernel '{path}': No such file or directory"


@needs_kvm
@pytest.mark.parametrize("path", ["tmpdir", "/dev/null"])
def test_kernel_not_a_regular_file(kite, tmp_path, path):
    path = tmp_path if path == "tmpdir" else path
    r = run([kite, "run", "--kernel", path])
    assert r.returncode == 4
    assert error_line(r) == f"kite: error: kernel '{path}': not a regular file"


@needs_kvm
def test_initrd_not_a_regular_file(kite, hello, tmp_path):
    r = run([kite, "run", "--kernel", hello, "--initrd", tmp_path])
    assert r.returncode == 4
    assert error_line(r) == f"kite: error: initrd '{tmp_path}': not a regular file"


def _without_dac_override():
    """A command prefix that runs a command unable to bypass file permissions:
    nothing as an ordinary user; as root, setpriv dropping CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH (root keeps owning /dev/kvm, so kite still opens it)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if not setpriv:
        return None
    caps = "-dac_override,-dac_read_search"
    prefix = [setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}"]
    if subprocess.run([*prefix, "true"], capture_output=True).returncode != 0:
        return None
    return prefix


@needs_kvm
def test_kernel_unreadable(kite, hello, tmp_path):
    prefix = _without_dac_override()
    if prefix is None:
        pytest.skip("running as root without a working setpriv: cannot make a file unreadable")
    path = tmp_path / "vmlinux"
    path.write_bytes(hello.read_bytes())
    path.chmod(0)
    r = run([*prefix, kite, "run", "--kernel", path])
    assert r.returncode == 4
    assert error_line(r) == f"kite: error: kernel '{path}': Permission denied"


def _elf_with(image, edit):
    elf = bytearray(image)
    edit(elf)
    return bytes(elf)


def _first_load_paddr(elf, value):
    phoff, = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    for i in range(phnum):
        off = phoff + i * phentsize
        if struct.unpack_from("<I", elf, off)[0] == 1:  # PT_LOAD
            struct.pack_into("<Q", elf, off + 0x18, value)  # p_paddr
            return
    raise AssertionError("no PT_LOAD")


BAD_KERNELS = {
    # name: (bytes, or a function of hello.elf's bytes; a fragment of the error)
    "empty": (b"", "file is empty"),
    "text": (b"this is not a kernel\n" * 100, "not a bzImage or ELF kernel"),
    "only-aa55": (bytes(0x1FE) + b"\x55\xaa" + bytes(0x200), "not a bzImage or ELF kernel"),
    "bzimage-header-cut": (bytes(header()[:0x240]), "bzImage truncated: 576 bytes, header needs"),
    "bzimage-first-0x300": (bytes(header()[:0x300]),
                            "bzImage truncated: setup is 1024 bytes of a 768-byte file"),
    "bzimage-setup-only": (bytes(header()), "bzImage truncated: setup is 1024 bytes of a 1024-byte file"),
    "bzimage-protocol-2.00": (bzimage(b"\xf4", version=0x0200), "boot protocol 2.00 too old"),
    "bzimage-no-64bit-entry": (bzimage(b"\xf4", xloadflags=0), "XLF_KERNEL_64 unset"),
    "bzimage-not-loaded-high": (bzimage(b"\xf4", loadflags=0), "not a loaded-high kernel"),
    "bzimage-load-below-1M": (bzimage(b"\xf4", pref_address=0x10000), "pref_address 0x10000"),
    "bzimage-init-size-4G": (bzimage(b"\xf4", init_size=0xFFFFFFFF), "kernel too large for guest memory"),
    "elf-truncated": (lambda h: h[:40], "ELF truncated: 40 bytes"),
    "elf-32bit": (lambda h: _elf_with(h, lambda e: e.__setitem__(4, 1)), "not a 64-bit little-endian x86-64"),
    "elf-phdrs-past-end": (lambda h: _elf_with(h, lambda e: struct.pack_into("<Q", e, 0x20, len(e))),
                           "program headers past the end of the file"),
    "elf-segment-above-ram": (lambda h: _elf_with(h, lambda e: _first_load_paddr(e, 0x80000000)),
                              "is outside guest RAM above 1 MiB"),
    "elf-segment-below-1M": (lambda h: _elf_with(h, lambda e: _first_load_paddr(e, 0x1000)),
                             "is outside guest RAM above 1 MiB"),
}


@needs_kvm
@pytest.mark.parametrize("name", sorted(BAD_KERNELS))
def test_bad_kernel_image(kite, hello, tmp_path, name):
    content, message = BAD_KERNELS[name]
    if callable(content):
        content = content(hello.read_bytes())
    path = tmp_path / name
    path.write_bytes(content)
    r = run([kite, "run", "--kernel", path, "--mem", "64"])
    assert r.returncode == 4, r.stderr
    line = error_line(r)
    assert line.startswith(f"kite: error: kernel '{path}': ")
    assert message in line


@needs_kvm
def test_kernel_larger_than_memory(kite, tmp_path):
    path = tmp_path / "huge"
    with open(path, "wb") as f:
        f.truncate(3 << 20)  # sparse: 3 MiB for a 2 MiB guest
    r = run([kite, "run", "--kernel", path, "--mem", "2"])
    assert r.returncode == 4
    assert error_line(r) == (f"kite: error: kernel '{path}' ({3 << 20} bytes) is too large "
                             f"for {2 << 20} bytes of guest memory")


@needs_kvm
def test_initrd_missing(kite, hello, tmp_path):
    path = tmp_path / "initrd.img"
    r = run([kite, "run", "--kernel", hello, "--initrd", path])
    assert r.returncode == 4
    assert error_line(r) == f"kite: error: initrd '{path}': No such file or directory"


@needs_kvm
def test_initrd_does_not_fit_beside_the_kernel(kite, hello, tmp_path):
    path = tmp_path / "initrd.img"
    with open(path, "wb") as f:
        f.truncate(15 << 20)  # 15 MiB in a 16 MiB guest whose kernel sits at 1 MiB
    r = run([kite, "run", "--kernel", hello, "--initrd", path, "--mem", "16"])
    assert r.returncode == 4
    line = error_line(r)
    assert line.startswith(f"kite: error: initrd '{path}': initrd of {15 << 20} bytes does not fit")


@needs_kvm
def test_initrd_larger_than_memory(kite, hello, tmp_path):
    path = tmp_path / "initrd.img"
    with open(path, "wb") as f:
        f.truncate(20 << 20)
    r = run([kite, "run", "--kernel", hello, "--initrd", path, "--mem", "16"])
    assert r.returncode == 4
    assert f"initrd '{path}' ({20 << 20} bytes) is too large" in error_line(r)


# ---- command line length ----

@needs_kvm
def test_cmdline_too_long(kite, hello):
    # An ELF kernel gets Linux's x86 COMMAND_LINE_SIZE: 2048 bytes with the NUL.
    r = run([kite, "run", "--kernel", hello, "--cmdline", "x" * 70000])
    assert r.returncode == 2
    assert error_line(r) == "kite: error: --cmdline is 70000 bytes; this kernel accepts at most 2047"


@needs_kvm
def test_cmdline_one_past_the_limit(kite, hello):
    r = run([kite, "run", "--kernel", hello, "--cmdline", "x" * 2048])
    assert r.returncode == 2
    assert "--cmdline is 2048 bytes" in error_line(r)


@needs_kvm
def test_cmdline_at_the_limit_boots(kite, hello):
    r = run([kite, "run", "--kernel", hello, "--test-device", "--cmdline", "x" * 2047])
    assert r.returncode == 0, r.stderr
    assert r.stdout == HELLO_LINE


# ---- where the guest's console goes ----

@needs_kvm
def test_serial_stdio_is_the_default(kite, hello):
    for extra in ([], ["--serial", "stdio"]):
        r = run([kite, "run", "--kernel", hello, "--test-device", *extra])
        assert r.returncode == 0, r.stderr
        assert r.stdout == HELLO_LINE


@needs_kvm
def test_serial_to_file(kite, hello, tmp_path):
    path = tmp_path / "console.log"
    r = run([kite, "run", "--kernel", hello, "--test-device", "--serial", path])
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""
    assert path.read_text() == HELLO_LINE


@needs_kvm
def test_serial_file_cannot_be_opened(kite, hello, tmp_path):
    path = tmp_path / "no-such-dir" / "console.log"
    r = run([kite, "run", "--kernel", hello, "--test-device", "--serial", path])
    assert r.returncode == 2
    assert error_line(r) == f"kite: error: --serial: open '{path}': No such file or directory"


@needs_kvm
def test_serial_none_prints_nothing(kite, hello):
    r = run([kite, "run", "--kernel", hello, "--test-device", "--serial", "none"])
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""


# ---- /dev/kvm unavailable (exit 3) ----

def _in_mount_namespace(setup, cmd):
    """Runs `setup` (shell) then cmd in a private mount namespace; skips the test
    if this machine does not allow one."""
    unshare = shutil.which("unshare")
    if not unshare or subprocess.run([unshare, "--mount", "true"], capture_output=True).returncode:
        pytest.skip("unshare --mount is not permitted here")
    script = f'{setup} || exit 97; exec "$@"'
    r = run([unshare, "--mount", "sh", "-c", script, "sh", *cmd])
    if r.returncode == 97:
        pytest.skip(f"cannot set up the mount namespace: {r.stderr.strip()}")
    return r


def test_dev_kvm_missing(kite, hello):
    # An empty /dev: there is no /dev/kvm at all.
    r = _in_mount_namespace("mount -t tmpfs tmpfs /dev", [kite, "run", "--kernel", hello])
    assert r.returncode == 3
    line = error_line(r)
    assert line.startswith("kite: error: /dev/kvm not found")


def test_dev_kvm_not_kvm(kite, hello):
    # /dev/kvm opens but is /dev/null: no KVM API behind it.
    if not os.path.exists("/dev/kvm"):
        pytest.skip("no /dev/kvm to cover")
    r = _in_mount_namespace("mount --bind /dev/null /dev/kvm", [kite, "run", "--kernel", hello])
    assert r.returncode == 3
    assert "/dev/kvm" in error_line(r)


@needs_kvm
def test_dev_kvm_permission_denied(kite, hello):
    # An ordinary user (nobody) when /dev/kvm is not world-accessible.
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to run as another user")
    if os.stat("/dev/kvm").st_mode & 0o006 == 0o006:
        pytest.skip("/dev/kvm is world read-write here")
    r = run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
             kite, "run", "--kernel", hello])
    if r.returncode == 126 or "Permission denied" in r.stderr and "kvm" not in r.stderr:
        pytest.skip(f"kite is not runnable as nobody: {r.stderr.strip()}")
    assert r.returncode == 3
    assert error_line(r) == "kite: error: open /dev/kvm: Permission denied (add the user to the kvm group)"


def test_missing_kernel_reported_before_kvm(kite, tmp_path):
    # A wrong kernel path is the user's first problem to fix: it is reported
    # even on a host with no /dev/kvm at all.
    missing = tmp_path / "no-such-kernel"
    r = _in_mount_namespace("mount -t tmpfs tmpfs /dev", [kite, "run", "--kernel", str(missing)])
    assert r.returncode == 4
    assert error_line(r) == f"kite: error: kernel '{missing}': No such file or directory"


@pytest.mark.parametrize("args, words", [
    (["--huge-pages", "1G"], "--huge-pages '1G': expected none, 2M or thp"),
    (["--huge-pages", "2M", "--mem", "65"], "--huge-pages 2M needs --mem in whole 2 MiB pages"),
])
def test_huge_pages_usage_errors(kite, args, words):
    r = run([kite, "run", "--kernel", "/nonexistent", *args])
    assert r.returncode == 2
    assert words in error_line(r)

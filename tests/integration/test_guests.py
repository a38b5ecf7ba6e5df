"""Each tiny guest of tests/guests/ under kite on /dev/kvm: exit code, console
output (stdout) and kite's messages (stderr).

Guests that pass end with a ucall DONE; at --level info kite then logs
"test guest done", which tells a real pass from a guest that reset the
machine by accident (also exit 0)."""
import re
import signal
import subprocess
import struct

import pytest

from bzimage import bzimage
from kitetest import REPO, needs_kvm, run

pytestmark = needs_kvm

DONE = "kite: info: test guest done"


def run_guest(kite, image, *args, level="info", **kw):
    return run([kite, "run", "--kernel", image, "--test-device", "--level", level, *args], **kw)


def assert_done(r):
    assert r.returncode == 0, f"exit {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    assert DONE in r.stderr.splitlines(), r.stderr
    assert "assertion failed" not in r.stderr


@pytest.fixture
def initrd(tmp_path):
    """A 4096-byte initrd starting with the magic the guests look for."""
    p = tmp_path / "initrd.img"
    p.write_bytes(b"KITEINRD" + bytes(4096 - 8))
    return p


# ---- guests that check the machine from inside and finish with DONE ----

@pytest.mark.parametrize("name, args", [
    ("pci_host", []),          # 0xCF8 latch, host bridge ids and class, empty slots
    ("port_unclaimed", []),    # unclaimed ports read all-ones at 1/2/4 bytes
    ("mmio_unclaimed", []),    # unclaimed MMIO in the hole reads all-ones
    ("acpi_rsdp", []),         # RSDP at 0xE0000, checksums, XSDT/FADT/MADT
    ("cpuid", []),             # hypervisor bit, KVM signature leaf, APIC id 0
    ("hlt", []),               # HLT woken by a pending self-IPI and by the LAPIC timer
    ("unmapped_ram", ["--mem", "64"]),  # gpa above RAM, below the hole: all-ones
])
def test_guest_checks_pass(kite, guests, name, args):
    r = run_guest(kite, guests / f"{name}.elf", *args)
    assert_done(r)
    assert r.stdout == ""


def test_virtio_pci_driver_side_and_hostile_queues(kite, guests):
    """A driver in a tiny guest: negotiation, a request through the ioeventfd
    answered with an MSI-X interrupt through the irqfd, then a descriptor loop,
    a bad queue size and rings outside RAM, each putting the device in
    NEEDS_RESET (with a warning) while kite runs on; after a reset it serves."""
    r = run_guest(kite, guests / "virtio_rng.elf", "--rng")
    assert_done(r)
    warnings = [l for l in r.stderr.splitlines() if "virtio-rng0" in l and "needs a reset" in l]
    assert len(warnings) == 3, r.stderr
    assert any("too long" in l or "loop" in l for l in warnings), warnings


def test_virtio_guest_without_the_device_finds_none(kite, guests):
    r = run_guest(kite, guests / "virtio_rng.elf")
    assert r.returncode == 6
    assert "GUEST_ASSERT(slot != 0)" in r.stderr


def test_serial_interrupts(kite, guests):
    r = run_guest(kite, guests / "serial_irq.elf")
    assert_done(r)
    assert r.stdout == ".\n"


def test_hello_prints_on_the_console(kite, guests):
    r = run_guest(kite, guests / "hello.elf")
    assert_done(r)
    assert r.stdout == "hello from a kite test guest\n"


def test_serial_registers_and_console_line(kite, guests):
    r = run_guest(kite, guests / "serial.elf")
    assert_done(r)
    # Exactly the guest's line: kite's own messages go to stderr, and the byte
    # sent in loopback mode ('#') must not reach the console.
    assert r.stdout == "kite serial test: 0123456789 ABCDEF\n"


def test_parked_application_processors_do_not_block_exit(kite, guests):
    # vCPUs 1-3 wait for a SIPI that never comes; kite must still stop them all.
    r = run_guest(kite, guests / "hello.elf", "--cpus", "4")
    assert_done(r)
    assert r.stdout == "hello from a kite test guest\n"


# ---- boot protocols ----

# 2 MiB: the smallest machine (initrd right under 2 MiB); 3072: RAM up to the
# hole; above 3072 the rest of RAM continues at 4 GiB.
@pytest.mark.parametrize("mem", [2, 128, 3072, 3073, 4608])
def test_elf_boot_params(kite, guests, initrd, mem):
    r = run_guest(kite, guests / "bootparams.elf", "--initrd", initrd, "--mem", str(mem),
                  "--cmdline", f"bootparams-test 4096 mem={mem}")
    assert_done(r)


def test_bzimage_boot_params(kite, guests, initrd, tmp_path):
    img = tmp_path / "bzImage"
    img.write_bytes(bzimage((guests / "bootparams.bin").read_bytes()))
    r = run_guest(kite, img, "--initrd", initrd, "--cmdline", "bootparams-test 4096 bzimage")
    assert_done(r)


def test_bzimage_initrd_below_initrd_addr_max(kite, guests, initrd, tmp_path):
    # With 128 MiB the initrd would go near 128 MiB; the header caps it at 64 MiB.
    img = tmp_path / "bzImage"
    img.write_bytes(bzimage((guests / "bootparams.bin").read_bytes(), initrd_addr_max=0x3FFFFFF))
    r = run_guest(kite, img, "--initrd", initrd, "--mem", "128",
                  "--cmdline", "bootparams-test 4096 bzimage")
    assert_done(r)


def test_bzimage_cmdline_longer_than_its_cmdline_size(kite, guests, tmp_path):
    img = tmp_path / "bzImage"
    img.write_bytes(bzimage((guests / "bootparams.bin").read_bytes(), cmdline_size=255))
    r = run_guest(kite, img, "--cmdline", "x" * 256)
    assert r.returncode == 2
    assert "--cmdline is 256 bytes; this kernel accepts at most 255" in r.stderr


def test_pvh_entry(kite, guests, initrd):
    r = run_guest(kite, guests / "pvh.elf", "--initrd", initrd, "--cmdline", "pvh-test cmdline")
    assert_done(r)
    assert r.stdout == "pvh: all checks passed in 32-bit protected mode\n"


def test_pvh_guest_notices_a_wrong_cmdline(kite, guests, initrd):
    # The PVH guest's checks are real: a different command line fails one,
    # reported with pvh.S's line.
    r = run_guest(kite, guests / "pvh.elf", "--initrd", initrd, "--cmdline", "pvh-test cmdlinX")
    assert r.returncode == 6
    assert re.search(r"guest assertion failed at tests/guests/pvh\.S:\d+: ", r.stderr), r.stderr


def test_elf_without_pvh_note_boots_at_e_entry(kite, guests, initrd, tmp_path):
    # Turn the PT_NOTE into PT_NULL: kite must fall back to the 64-bit entry at
    # e_entry, where the guest reports it was entered.
    elf = bytearray((guests / "pvh.elf").read_bytes())
    phoff, = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    notes = 0
    for i in range(phnum):
        off = phoff + i * phentsize
        if struct.unpack_from("<I", elf, off)[0] == 4:  # PT_NOTE
            struct.pack_into("<I", elf, off, 0)        # PT_NULL
            notes += 1
    assert notes == 1
    img = tmp_path / "no-note.elf"
    img.write_bytes(bytes(elf))
    r = run_guest(kite, img, "--initrd", initrd, "--cmdline", "pvh-test cmdline")
    assert r.returncode == 6
    assert "entered at the ELF e_entry, not the PVH note's entry" in r.stderr


# ---- the ways a guest ends the VM ----

@pytest.mark.parametrize("method, reason", [
    ("i8042", "guest reset (i8042)"),
    ("acpi-reset", "guest reset (ACPI reset register)"),
    ("pci-cf9", "guest reset (PCI reset control)"),
    ("acpi-s5", "guest powered off (ACPI S5)"),
])
def test_reset_and_poweroff(kite, guests, method, reason):
    r = run_guest(kite, guests / "reset.elf", "--cmdline", method)
    assert r.returncode == 0, r.stderr
    assert f"kite: info: {reason}" in r.stderr.splitlines()
    assert DONE not in r.stderr
    assert "still running after the reset" not in r.stderr
    if method == "pci-cf9":
        # 0x02 alone (reset type, no start bit) does not reset.
        assert "guest: cf9: still running after 0x02" in r.stderr


def test_triple_fault_is_a_reset(kite, guests):
    r = run_guest(kite, guests / "triple_fault.elf")
    assert r.returncode == 0, r.stderr
    assert "guest: triple-fault: loading an empty IDT" in r.stderr
    assert re.search(r"^kite: info: guest reset \(triple fault", r.stderr, re.M), r.stderr
    assert DONE not in r.stderr
    assert "returned" not in r.stderr


def test_emulation_failure_exits_5_with_registers(kite, guests):
    elf = guests / "emulation_failure.elf"
    sym = run(["nm", elf]).stdout
    rip = int(re.search(r"^([0-9a-f]+) T unemulatable$", sym, re.M).group(1), 16)
    r = run_guest(kite, elf)
    assert r.returncode == 5, r.stderr
    assert "guest: emulation-failure: LSL from MMIO" in r.stderr
    assert re.search(r"^kite: error: vCPU 0: .*KVM_EXIT_INTERNAL_ERROR", r.stderr, re.M), r.stderr
    # The dump is the guest's state at the failing instruction.
    assert f"rip={rip:016x}" in r.stderr, r.stderr
    assert "rax=00000000d0000000" in r.stderr
    assert DONE not in r.stderr


# ---- the test device itself ----

def test_failed_assert_exits_6_with_file_and_line(kite, guests):
    src = REPO / "tests" / "guests" / "assert_fail.c"
    line = next(i for i, text in enumerate(src.read_text().splitlines(), 1) if "ASSERT-LINE" in text)
    r = run_guest(kite, guests / "assert_fail.elf")
    assert r.returncode == 6
    lines = r.stderr.splitlines()
    assert lines[0] == "guest: assert-fail: about to fail"
    assert (f"kite: guest assertion failed at tests/guests/assert_fail.c:{line}: "
            "GUEST_ASSERT_EQ(two, 3) (0x2, 0x3)") in lines
    assert "still running" not in r.stderr
    assert DONE not in r.stderr


def test_malformed_ucalls_are_ignored(kite, guests):
    r = run_guest(kite, guests / "ucall_bad.elf", "--mem", "64")
    assert_done(r)
    warn = "kite: warning: testdev: "
    for expected in [
        "ucall at 0xd0000000 is outside guest RAM; ignored",
        "ucall at 0x80000000 is outside guest RAM; ignored",
        "ucall at 0x3fffff0 is outside guest RAM; ignored",  # runs past the end of RAM
        "has bad magic 0xdeadbeef; ignored",
        "ignored 1-byte write (ucalls are 4-byte OUTs)",
        "unknown ucall 77; ignored",
    ]:
        assert any(l.startswith(warn) and expected in l for l in r.stderr.splitlines()), expected
    assert "guest: ucall-bad: survived" in r.stderr


# ---- boot timer ----

BOOT_TIME = re.compile(r"^kite: Guest-boot-time = +\d+ us \d+ ms, +\d+ CPU us \d+ CPU ms$")


def test_boot_timer_logs_boot_time(kite, guests):
    r = run_guest(kite, guests / "boot_timer.elf", "--boot-timer")
    assert_done(r)
    lines = r.stderr.splitlines()
    hits = [i for i, l in enumerate(lines) if BOOT_TIME.match(l)]
    assert len(hits) == 1, r.stderr
    # Logged at the magic write: after the guest announced it, before it went on.
    assert lines[hits[0] - 1] == "guest: boot-timer: writing 123"
    assert lines[hits[0] + 1] == "guest: boot-timer: still running"


def test_boot_timer_absent_without_flag(kite, guests):
    r = run_guest(kite, guests / "boot_timer.elf")
    assert_done(r)
    assert "Guest-boot-time" not in r.stderr


@pytest.mark.parametrize("sig, code, name", [
    (signal.SIGTERM, 143, "Terminated"),
    (signal.SIGINT, 130, "Interrupt"),
    (signal.SIGHUP, 129, "Hangup"),
])
def test_signal_stops_a_running_guest(kite, guests, sig, code, name):
    # A guest halted with interrupts off never ends by itself; the signal must
    # reach kite's signal thread and stop the vCPU parked in KVM_RUN.
    p = subprocess.Popen([kite, "run", "--kernel", guests / "idle.elf", "--test-device",
                          "--level", "info"], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline() == "idle guest up\n"
        p.send_signal(sig)
        _, err = p.communicate(timeout=20)
    finally:
        p.kill()
    assert p.returncode == code, err
    assert f"kite: info: stopped by signal {name}" in err.splitlines()


# ---- the i8042 keyboard controller ----

def test_i8042_probe_as_linux_does(kite, guests):
    # Self-test, CTR, interface tests, then the keyboard's answers polled and
    # through IRQ 1, with and without translation (tests/guests/i8042.c).
    r = run_guest(kite, guests / "i8042.elf")
    assert_done(r)
    assert r.stdout == ""


def test_i8042_output_port_reset(kite, guests):
    # The output port written with bit 0 clear holds the CPU in reset.
    r = run_guest(kite, guests / "i8042.elf", "--cmdline", "outport-reset")
    assert r.returncode == 0, r.stderr
    assert "kite: info: guest reset (i8042)" in r.stderr.splitlines()
    assert DONE not in r.stderr
    assert "still running after the output port reset" not in r.stderr


def test_console_input_from_a_pipe(kite, guests):
    # stdin is a pipe: kite forwards it to COM1's receive buffer.
    r = run_guest(kite, guests / "serial_input.elf", input="hello kite\n", stdin=None)
    assert_done(r)
    assert r.stdout == "ready\ngot: hello kite\n"


def test_console_input_ignored_from_dev_null(kite, guests):
    # stdin is /dev/null: no input thread, the guest waits; SIGTERM ends it.
    p = subprocess.Popen([kite, "run", "--kernel", guests / "serial_input.elf", "--test-device"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        assert p.stdout.readline() == "ready\n"
        p.terminate()
        out, _ = p.communicate(timeout=20)
    finally:
        p.kill()
    assert p.returncode == 143
    assert "got:" not in out

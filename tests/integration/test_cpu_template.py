"""Custom CPU templates on this host (docs/cpu-templates.md): `kite cpu-template
dump|intersect|check`, a template applied with `kite run --cpu-template`, PUT
/cpu-config and --config-file, what the guest then sees (tests/guests/cpuid_template.c
prints CPUID leaves and checks bits and MSRs named on its command line), and the
refusal of invalid templates and of templates this host cannot satisfy.

On a PVM host (kvm_pvm), guests get the hardware's CPUID leaves 0x1 ECX/EDX, 0x7
and 0xd whatever kite sets: the checks of those leaves become checks of kite's
warning there."""
import copy
import json
import os
import re

import pytest

from kiteapi import spawn, workdir  # noqa: F401
from kitetest import GUESTS, error_line, needs_kvm, run

pytestmark = needs_kvm

DONE = "kite: info: test guest done"
PVM = os.path.exists("/sys/module/kvm_pvm")
PVM_WARNING = "this host's KVM is PVM (kvm_pvm)"
REGS = ("eax", "ebx", "ecx", "edx")

# Leaves the guest prints (leaf, subleaf).
SHOWN = [(0x0, 0), (0x1, 0), (0x7, 0), (0x7, 1), (0xb, 0), (0xb, 1), (0xd, 0), (0xd, 1),
         (0x40000000, 0), (0x40000001, 0), (0x80000000, 0), (0x80000001, 0), (0x80000002, 0),
         (0x80000003, 0), (0x80000004, 0), (0x80000008, 0)]
SHOW = " ".join(f"p={l:x},{s:x}" for l, s in SHOWN)
BRAND = b"kite fleet cpu".ljust(48, b"\0")


# ---------------------------------------------------------------- helpers ----

def dump(kite, path=None):
    args = [kite, "cpu-template", "dump"] + (["--out", path] if path else [])
    r = run(args)
    assert r.returncode == 0, r.stderr
    if PVM:
        assert PVM_WARNING in r.stderr
    else:
        assert r.stderr == ""
    return json.loads(path.read_text() if path else r.stdout)


def bits32(v):
    return "0b" + format(v, "032b")


def leaf_of(tmpl, leaf, subleaf=0):
    for l in tmpl["cpuid_modifiers"]:
        if int(l["leaf"], 16) == leaf and int(l["subleaf"], 16) == subleaf:
            return l
    return None


def reg_of(tmpl, leaf, subleaf, reg):
    """A fully fixed register of a template, as an int."""
    l = leaf_of(tmpl, leaf, subleaf)
    assert l, f"leaf {leaf:#x}.{subleaf:#x} missing"
    for m in l["modifiers"]:
        if m["register"] == reg:
            assert "x" not in m["bitmap"], m
            return int(m["bitmap"][2:], 2)
    raise AssertionError(f"{reg} missing in {leaf:#x}.{subleaf:#x}")


def set_reg(tmpl, leaf, subleaf, reg, value, flags=0):
    l = leaf_of(tmpl, leaf, subleaf)
    if l is None:
        l = {"leaf": hex(leaf), "subleaf": hex(subleaf), "flags": flags, "modifiers": []}
        tmpl["cpuid_modifiers"].append(l)
    l["modifiers"] = [m for m in l["modifiers"] if m["register"] != reg]
    l["modifiers"].append({"register": reg, "bitmap": value if isinstance(value, str) else bits32(value)})


def write(d, name, obj):
    p = d / name
    p.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return p


def guest_run(kite, *args, cmdline=SHOW, level="info"):
    return run([kite, "run", "--kernel", GUESTS / "cpuid_template.elf", "--test-device",
                "--level", level, "--cmdline", cmdline, *args])


def assert_done(r):
    assert r.returncode == 0, f"exit {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    assert DONE in r.stderr.splitlines(), r.stderr
    assert "cpuid_template: ok" in r.stdout.splitlines(), r.stdout
    assert "FAIL" not in r.stdout, r.stdout


def seen(stdout):
    """{(leaf, subleaf): [eax, ebx, ecx, edx]} from the guest's "cpuid" lines."""
    out = {}
    for line in stdout.splitlines():
        m = re.fullmatch(r"cpuid ([0-9a-f]{8}) ([0-9a-f]{8})((?: [0-9a-f]{8}){4})", line)
        if m:
            out[(int(m[1], 16), int(m[2], 16))] = [int(x, 16) for x in m[3].split()]
    return out


def check(leaf, subleaf, reg, mask, value):
    return f"c={leaf:x},{subleaf:x},{'abcd'[REGS.index(reg)]},{mask:x},{value:x}"


# Feature bits a guest never misses (only the test guest runs), first one the host
# has is cleared: LAHF/SAHF in 64-bit mode, RDTSCP.
CLEARABLE = [(0x80000001, 0, "ecx", 0), (0x80000001, 0, "edx", 27)]
# The same in the leaves PVM takes from the hardware: AES, FSGSBASE, MOVBE.
CLEARABLE_HW = [(0x1, 0, "ecx", 25), (0x7, 0, "ebx", 0), (0x1, 0, "ecx", 22)]


def first_set(d, candidates):
    for leaf, sub, reg, bit in candidates:
        if reg_of(d, leaf, sub, reg) >> bit & 1:
            return leaf, sub, reg, bit
    pytest.fail(f"this host has none of {candidates}: pick other bits for the test", pytrace=False)


def edited(d):
    """The dump with a feature bit cleared, the brand string and the highest basic
    leaf forced, and an MSR set; returns (template, guest checks)."""
    t = copy.deepcopy(d)
    leaf, sub, reg, bit = first_set(d, CLEARABLE)
    set_reg(t, leaf, sub, reg, reg_of(d, leaf, sub, reg) & ~(1 << bit))
    checks = [check(leaf, sub, reg, 1 << bit, 0)]
    for i in range(12):
        word = int.from_bytes(BRAND[4 * i:4 * i + 4], "little")
        set_reg(t, 0x80000002 + i // 4, 0, REGS[i % 4], word)
        checks.append(check(0x80000002 + i // 4, 0, REGS[i % 4], 0xffffffff, word))
    set_reg(t, 0x0, 0, "eax", 0xd)
    checks.append(check(0x0, 0, "eax", 0xffffffff, 0xd))
    # KERNEL_GS_BASE: the low 12 bits kept (0 from kite's boot MSRs).
    t["msr_modifiers"] = [{"addr": "0xc0000102", "bitmap": "0b" + format(0x123456789, "052b") + "x" * 12}]
    checks.append("m=c0000102,123456789000")
    return t, checks


def cli(kite, *args):
    return run([kite, "cpu-template", *args])


# -------------------------------------------------------------- dump/check ----

def test_dump_fixes_every_bit_of_every_leaf(kite, tmp_path):
    d = dump(kite)
    assert d == dump(kite, tmp_path / "d.json")
    assert d["msr_modifiers"] == []
    keys = [(int(l["leaf"], 16), int(l["subleaf"], 16)) for l in d["cpuid_modifiers"]]
    assert len(keys) == len(set(keys))
    for k in [(0x0, 0), (0x1, 0), (0x40000000, 0), (0x40000001, 0), (0x80000000, 0)]:
        assert k in keys
    for l in d["cpuid_modifiers"]:
        assert [m["register"] for m in l["modifiers"]] == list(REGS)
        for m in l["modifiers"]:
            assert re.fullmatch(r"0b[01]{32}", m["bitmap"]), m
    # kite's normalisation: hypervisor bit, no VMX, KVM's signature, vCPU 0 of 1.
    assert reg_of(d, 0x1, 0, "ecx") >> 31 & 1
    assert not reg_of(d, 0x1, 0, "ecx") >> 5 & 1
    assert reg_of(d, 0x1, 0, "ebx") >> 16 == 0x0001
    assert reg_of(d, 0x40000000, 0, "ebx").to_bytes(4, "little") == b"KVMK"
    r = cli(kite, "check", tmp_path / "d.json")
    assert (r.returncode, r.stderr) == (0, "")
    assert "this host can satisfy the template" in r.stdout


def test_dump_reapplied_with_run_changes_nothing(kite, tmp_path):
    """What the guest sees with the dump as its template is what it sees without
    one, two vCPUs included: the dump's APIC id and count (vCPU 0 of 1) are kite's to set."""
    p = tmp_path / "d.json"
    dump(kite, p)
    topo = check(0x1, 0, "ebx", 0xffff0000, 0x00020000)
    plain = guest_run(kite, "--cpus", "2", cmdline=f"{SHOW} {topo}")
    assert_done(plain)
    with_dump = guest_run(kite, "--cpus", "2", "--cpu-template", p, cmdline=f"{SHOW} {topo}")
    assert_done(with_dump)
    assert seen(with_dump.stdout) == seen(plain.stdout)
    assert set(seen(plain.stdout)) == set(SHOWN)


def test_run_guest_sees_the_template(kite, tmp_path):
    d = dump(kite)
    t, checks = edited(d)
    if not PVM:
        leaf, sub, reg, bit = first_set(d, CLEARABLE_HW)
        set_reg(t, leaf, sub, reg, reg_of(d, leaf, sub, reg) & ~(1 << bit))
        checks.append(check(leaf, sub, reg, 1 << bit, 0))
    r = guest_run(kite, "--cpu-template", write(tmp_path, "t.json", t), cmdline=" ".join(checks))
    assert_done(r)
    # The checks are real: without the template they fail (but for the brand
    # string's trailing zero words on a host without a brand string).
    r = guest_run(kite, cmdline=" ".join(checks))
    assert r.returncode == 6, r.stderr
    failed = [l for l in r.stdout.splitlines() if l.startswith("FAIL ")]
    for c in [checks[0], checks[1], check(0x0, 0, "eax", 0xffffffff, 0xd), "m=c0000102,123456789000"] + checks[15:]:
        assert any(l.startswith(f"FAIL {c} got ") for l in failed), (c, r.stdout)


def test_hardware_leaves(kite, tmp_path):
    """Clearing a feature of 0x1/0x7 the host has: the guest sees it cleared. On
    a PVM host, hardware features KVM does not list reach the guest whatever the
    template says: kite warns, and the guest indeed still sees the bit."""
    d = dump(kite)
    if PVM:
        always = check(0, 0, "eax", 0, 0)
        plain = guest_run(kite, cmdline=f"p=1,0 p=7,0 {always}")
        assert_done(plain)
        g = seen(plain.stdout)
        hw = [(leaf, sub, reg, bit) for leaf, sub in [(0x1, 0), (0x7, 0)] for reg in REGS[1:]
              for bit in range(32)
              if g[(leaf, sub)][REGS.index(reg)] >> bit & 1 and not reg_of(d, leaf, sub, reg) >> bit & 1]
        assert hw, "PVM passed no hardware feature beyond KVM's table"
        leaf, sub, reg, bit = hw[0]
    else:
        leaf, sub, reg, bit = first_set(d, CLEARABLE_HW)
    t = {"cpuid_modifiers": [], "msr_modifiers": []}
    mask = ["x"] * 32
    mask[31 - bit] = "0"
    set_reg(t, leaf, sub, reg, "0b" + "".join(mask), flags=1 if leaf == 0x7 else 0)
    want = check(leaf, sub, reg, 1 << bit, 0)
    r = guest_run(kite, "--cpu-template", write(tmp_path, "t.json", t), cmdline=want)
    if PVM:
        assert r.returncode == 6 and f"FAIL {want} got" in r.stdout, r.stdout
        warnings = [l for l in r.stderr.splitlines() if PVM_WARNING in l]
        assert len(warnings) == 1 and "cannot take those away here" in warnings[0], r.stderr
    else:
        assert_done(r)
        assert PVM_WARNING not in r.stderr


def test_api_edited_dump_boots_and_guest_sees_it(kite, spawn):
    """PUT /cpu-config with a dump, edited: the guest (without a test device: its
    console says how it went) sees the template."""
    d = dump(kite)
    t, checks = edited(d)
    k = spawn()
    assert k.req("PUT", "/boot-source", {"kernel_image_path": str(GUESTS / "cpuid_template.elf"),
                                         "boot_args": " ".join(checks)}).status == 204
    assert k.req("PUT", "/machine-config", {"vcpu_count": 2, "mem_size_mib": 32}).status == 204
    r = k.req("PUT", "/cpu-config", t)
    assert r.status == 204, r
    assert k.req("GET", "/vm/config").json["cpu-config"] == t
    r = k.req("PUT", "/actions", {"action_type": "InstanceStart"})
    assert r.status == 204, r
    k.wait_console("cpuid_template: ")
    assert k.wait_exit() == 0
    assert "cpuid_template: ok" in k.stdout().splitlines(), k.stdout()


def test_api_plain_dump_and_replacement(kite, spawn):
    """A dump via the API boots; a second PUT replaces the first template (the
    guest sees the second's brand string, not the first's)."""
    d = dump(kite)
    first = copy.deepcopy(d)
    set_reg(first, 0x80000002, 0, "eax", int.from_bytes(b"1st!", "little"))
    second = copy.deepcopy(d)
    set_reg(second, 0x80000002, 0, "eax", int.from_bytes(b"2nd!", "little"))
    k = spawn()
    want = check(0x80000002, 0, "eax", 0xffffffff, int.from_bytes(b"2nd!", "little"))
    assert k.req("PUT", "/boot-source", {"kernel_image_path": str(GUESTS / "cpuid_template.elf"),
                                         "boot_args": want}).status == 204
    assert k.req("PUT", "/cpu-config", first).status == 204
    assert k.req("PUT", "/cpu-config", second).status == 204
    assert k.req("PUT", "/actions", {"action_type": "InstanceStart"}).status == 204
    k.wait_console("cpuid_template: ")
    assert k.wait_exit() == 0
    assert "cpuid_template: ok" in k.stdout().splitlines(), k.stdout()


def test_config_file_cpu_config(kite, tmp_path):
    d = dump(kite)
    t, checks = edited(d)
    cfg = {"boot-source": {"kernel_image_path": str(GUESTS / "cpuid_template.elf"), "boot_args": " ".join(checks)},
           "machine-config": {"vcpu_count": 1, "mem_size_mib": 32}, "cpu-config": t}
    r = run([kite, "--config-file", write(tmp_path, "vm.json", cfg), "--no-api"])
    assert r.returncode == 0, r.stderr
    assert "cpuid_template: ok" in r.stdout.splitlines(), r.stdout


def test_msr_modifiers_the_host_refuses(kite, tmp_path):
    no_such = {"msr_modifiers": [{"addr": "0x12345678", "bitmap": "0b" + "x" * 63 + "1"}]}
    r = guest_run(kite, "--cpu-template", write(tmp_path, "a.json", no_such), level="warning")
    assert r.returncode == 2
    assert "CPU template: MSR 0x12345678: this host's KVM has no such MSR" in error_line(r)
    # MTRRdefType with reserved bits set.
    bad_value = {"msr_modifiers": [{"addr": "0x2ff", "bitmap": "0b" + "0" * 48 + "1111000000000110"}]}
    r = guest_run(kite, "--cpu-template", write(tmp_path, "b.json", bad_value), level="warning")
    assert r.returncode == 2
    assert "CPU template: this host's KVM refuses MSR 0x2ff = 0xf006" in error_line(r)


# ----------------------------------------------------------- unsatisfiable ----

def unsupported_bit(d):
    """A feature bit this host does not offer guests (kite's normalised table)."""
    for leaf, sub, reg in [(0x7, 0, "ebx"), (0x7, 0, "ecx"), (0x80000001, 0, "ecx"), (0x1, 0, "ecx")]:
        v = reg_of(d, leaf, sub, reg)
        for bit in range(32):
            if (leaf, reg, bit) in [(0x1, "ecx", 27), (0x7, "ecx", 4)]:
                continue  # OSXSAVE, OSPKE: KVM's to set at run time
            if not v >> bit & 1:
                return leaf, sub, reg, bit
    pytest.fail("this host offers every feature bit the test looks at", pytrace=False)


def forcing(leaf, sub, reg, bit):
    bm = ["x"] * 32
    bm[31 - bit] = "1"
    return {"cpuid_modifiers": [{"leaf": hex(leaf), "subleaf": hex(sub), "flags": 1 if leaf == 0x7 else 0,
                                 "modifiers": [{"register": reg, "bitmap": "0b" + "".join(bm)}]}]}


def test_unsatisfiable_template_is_refused(kite, tmp_path, spawn):
    d = dump(kite)
    leaf, sub, reg, bit = unsupported_bit(d)
    for t, where in [(forcing(leaf, sub, reg, bit), f"leaf {leaf:#x} subleaf {sub:#x} {reg} bit {bit},"),
                     # VMX: KVM may offer it, kite never does.
                     (forcing(0x1, 0, "ecx", 5), "leaf 0x1 subleaf 0x0 ecx bit 5,")]:
        p = write(tmp_path, "u.json", t)
        r = guest_run(kite, "--cpu-template", p, level="warning")
        assert r.returncode == 2, r.stderr
        line = error_line(r)
        assert "CPU template:" in line and where in line and "a template the host cannot satisfy" in line, line
        r = cli(kite, "check", p)
        assert r.returncode == 2 and where in error_line(r) and str(p) in error_line(r)
        k = spawn()
        r = k.req("PUT", "/cpu-config", t)
        assert r.status == 400 and where in r.fault and "cannot satisfy" in r.fault, r
        assert "cpu-config" not in k.req("GET", "/vm/config").json


# ------------------------------------------------------------ bad templates ----

BAD = [
    ('{"cpuid_modifiers": [', "invalid JSON at line 1"),
    ('{"cpuid_modifiers": [{"leaf": "0x1", "subleaf": "0x0", "flags": 0, "modifiers": '
     '[{"register": "eax", "bitmap": "0b101"}]}]}',
     "cpuid_modifiers[0].modifiers[0].bitmap '0b101': 3 bits where 32 are needed"),
    ('{"cpuid_modifiers": [{"leaf": "0x1", "subleaf": "0x0", "flags": 0, "modifiers": '
     '[{"register": "eax", "bitmap": "0b0000000000000000000000000000000z"}]}]}', "character 34 'z'"),
    ('{"cpuid_modifiers": [{"leaf": "0x1", "subleaf": "0x0", "flags": 0, "modifiers": '
     '[{"register": "ekx", "bitmap": "0b00000000000000000000000000000000"}]}]}', "register: expected eax"),
    ('{"cpuid_modifiers": [{"leaf": "one", "subleaf": "0x0", "flags": 0, "modifiers": []}]}',
     "cpuid_modifiers[0].leaf 'one': expected a 32-bit number"),
    ('{"msr_modifiers": [{"addr": "0x10a", "bitmap": "0b1"}]}', "1 bits where 64 are needed"),
    ('{"reg_modifiers": [{"addr": "0x0", "bitmap": "0b1"}]}', "reg_modifiers: not supported by kite"),
    ('{"cpuid_modifers": []}', "unknown member 'cpuid_modifers'"),
]


@pytest.mark.parametrize("text, msg", BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_template_file(kite, tmp_path, text, msg):
    p = write(tmp_path, "bad.json", text)
    r = guest_run(kite, "--cpu-template", p, level="warning")
    assert r.returncode == 2
    line = error_line(r)
    assert f"--cpu-template '{p}': " in line and msg in line, line
    r = cli(kite, "check", p)
    assert r.returncode == 2 and msg in error_line(r) and f"'{p}'" in error_line(r)


# The API's answers: the contract's schema speaks first for what it describes
# (the register enum, unknown members), kite's parser for the rest.
API_FAULTS = {
    3: "PUT /cpu-config: field 'cpuid_modifiers[0].modifiers[0].register': 'ekx' is not one of eax, ebx, ecx, edx.",
    7: "PUT /cpu-config: field 'cpuid_modifers': unknown field.",
}


@pytest.mark.parametrize("i", range(1, len(BAD)))
def test_bad_template_api(spawn, i):
    text, msg = BAD[i]
    k = spawn()
    r = k.req("PUT", "/cpu-config", json.loads(text))
    assert r.status == 400, r
    if i in API_FAULTS:
        assert r.fault == API_FAULTS[i]
    else:
        assert r.fault.startswith("Invalid CPU template: ") and msg in r.fault, r.fault
    assert "cpu-config" not in k.req("GET", "/vm/config").json


def test_template_file_unreadable(kite, tmp_path):
    r = guest_run(kite, "--cpu-template", tmp_path / "none.json", level="warning")
    assert r.returncode == 2
    assert f"'{tmp_path / 'none.json'}': No such file or directory" in error_line(r)


# --------------------------------------------------------------- intersect ----

def test_intersect_of_dumps(kite, tmp_path):
    """This host's dump and a made-up smaller host (fewer features, an older
    highest leaf, another stepping): the baseline has the smaller host's features,
    the smaller highest leaf, the stepping left to each host; it applies here."""
    a = dump(kite, tmp_path / "a.json")
    b = copy.deepcopy(a)
    leaf, sub, reg, bit = first_set(a, CLEARABLE)
    set_reg(b, leaf, sub, reg, reg_of(a, leaf, sub, reg) & ~(1 << bit))
    set_reg(b, 0x0, 0, "eax", reg_of(a, 0x0, 0, "eax") - 1)
    set_reg(b, 0x1, 0, "eax", reg_of(a, 0x1, 0, "eax") ^ 1)
    write(tmp_path, "b.json", b)

    r = cli(kite, "intersect", tmp_path / "a.json", tmp_path / "b.json")
    assert (r.returncode, r.stderr) == (0, ""), r.stderr
    base = json.loads(r.stdout)
    r = cli(kite, "intersect", tmp_path / "b.json", tmp_path / "a.json", "--out", tmp_path / "base.json")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    assert json.loads((tmp_path / "base.json").read_text())["cpuid_modifiers"] == base["cpuid_modifiers"]

    assert reg_of(base, leaf, sub, reg) == reg_of(b, leaf, sub, reg)
    assert reg_of(base, 0x0, 0, "eax") == reg_of(a, 0x0, 0, "eax") - 1
    eax1 = next(m["bitmap"] for m in leaf_of(base, 0x1)["modifiers"] if m["register"] == "eax")
    assert eax1 == bits32(reg_of(a, 0x1, 0, "eax"))[:-1] + "x"
    # Everything else agrees, so stays fixed.
    assert leaf_of(base, 0x80000008) == leaf_of(a, 0x80000008)

    # With itself: the same template.
    r = cli(kite, "intersect", tmp_path / "a.json", tmp_path / "a.json")
    assert json.loads(r.stdout) == a

    r = cli(kite, "check", tmp_path / "base.json")
    assert r.returncode == 0, r.stderr
    cmd = f"{check(leaf, sub, reg, 1 << bit, 0)} {check(0, 0, 'eax', 0xffffffff, reg_of(a, 0, 0, 'eax') - 1)}"
    assert_done(guest_run(kite, "--cpu-template", tmp_path / "base.json", cmdline=cmd))


def test_intersect_errors(kite, tmp_path):
    good = tmp_path / "good.json"
    dump(kite, good)
    bad = write(tmp_path, "bad.json", '{"msr_modifiers": [{"addr": "0x10a", "bitmap": "0b1"}]}')
    notjson = write(tmp_path, "nj.json", "{\n  oops\n}")
    for args, msg in [
        ([good], "intersect: expected at least two template files"),
        ([good, tmp_path / "none.json"], f"intersect: '{tmp_path / 'none.json'}': No such file or directory"),
        ([good, bad], f"intersect: '{bad}': msr_modifiers[0].bitmap '0b1': 1 bits where 64 are needed"),
        ([notjson, good], f"intersect: '{notjson}': invalid JSON at line 2"),
        ([good, good, "--bogus"], "intersect: unknown option '--bogus'"),
        ([good, good, "--out"], "intersect: --out needs a file path"),
    ]:
        r = cli(kite, "intersect", *args)
        assert r.returncode == 2, (args, r.stderr)
        assert msg in error_line(r), error_line(r)
    r = cli(kite, "intersect", good, good, "--out", tmp_path / "no" / "such" / "dir.json")
    assert r.returncode == 1
    assert "cannot write" in error_line(r)


def test_cli_usage(kite):
    r = cli(kite)
    assert r.returncode == 2 and "needs a command" in error_line(r)
    r = cli(kite, "merge")
    assert r.returncode == 2 and "unknown command 'merge'" in error_line(r)
    r = cli(kite, "dump", "extra")
    assert r.returncode == 2 and "dump: unexpected argument 'extra'" in error_line(r)
    r = cli(kite, "check")
    assert r.returncode == 2 and "check: expected one template file" in error_line(r)
    r = cli(kite, "--help")
    assert r.returncode == 0 and "kite cpu-template intersect" in r.stdout
    r = run([kite, "--help"])
    assert "kite cpu-template" in r.stdout and "--cpu-template FILE" in r.stdout

"""kite as a Firecracker process: --config-file (with and without the API), --no-api,
bad configuration files, the API socket's path, metrics (--metrics-path, PUT /metrics,
FlushMetrics), the logger (PUT /logger, --log-path) and --id."""
import json
import os
import signal

import pytest

from kiteapi import spawn, wait_for, workdir  # noqa: F401
from kitetest import GUESTS, REPO, error_line, needs_kvm, run

EXAMPLE = REPO.parent / "shared" / "firecracker-vm-config-example.json"
SIGTERM_EXIT = 128 + signal.SIGTERM
UP = "idle guest up"


def example_config(kernel="idle.elf", nested_nulls=True):
    """Firecracker's example configuration for the idle guest: no drives (kite has no
    block device yet); its null sections stay, as Firecracker writes them."""
    path = os.environ.get("KITE_VM_CONFIG_EXAMPLE", EXAMPLE)
    if not os.path.exists(path):
        pytest.fail(f"{path} is missing (KITE_VM_CONFIG_EXAMPLE=... to point at a copy)", pytrace=False)
    with open(path) as f:
        cfg = json.load(f)
    cfg["boot-source"]["kernel_image_path"] = str(GUESTS / kernel)
    cfg["drives"] = []
    if not nested_nulls:
        for key, sec in cfg.items():
            if isinstance(sec, dict):
                cfg[key] = {k: v for k, v in sec.items() if v is not None}
    assert any(v is None for v in cfg.values()), "the example lost its null sections"
    return cfg


def write(d, cfg, name="vm.json"):
    p = d / name
    p.write_text(cfg if isinstance(cfg, str) else json.dumps(cfg))
    return p


def metric_lines(path):
    """The complete JSON lines of a metrics file so far."""
    try:
        data = path.read_text()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in data.split("\n")[:-1]]


def wait_lines(path, n):
    return wait_for(lambda: len(metric_lines(path)) >= n and metric_lines(path),
                    what=f"{n} metrics lines in {path}")


# ----------------------------------------------------------- --config-file ----

@needs_kvm
def test_config_file_boots_and_keeps_the_api(spawn, workdir):
    cfg = example_config(nested_nulls=False)
    k = spawn("--config-file", write(workdir, cfg))
    k.wait_console(UP)
    r = k.req("GET", "/")
    assert r.status == 200 and r.json["state"] == "Running", r
    mc = k.req("GET", "/machine-config").json
    assert (mc["vcpu_count"], mc["mem_size_mib"]) == (cfg["machine-config"]["vcpu_count"],
                                                      cfg["machine-config"]["mem_size_mib"])
    assert k.req("GET", "/vm/config").json["boot-source"] == cfg["boot-source"]
    r = k.req("PUT", "/boot-source", {"kernel_image_path": "/x"})
    assert r.status == 400 and "after starting" in r.fault
    assert k.req("PATCH", "/vm", {"state": "Paused"}).status == 204
    assert k.req("GET", "/").json["state"] == "Paused"
    assert k.stop() == SIGTERM_EXIT
    assert not k.sock.exists()
    assert "kite: error" not in k.stderr()


@needs_kvm
def test_config_file_example_verbatim_boots(spawn, workdir):
    k = spawn("--config-file", write(workdir, example_config()), wait=False)
    wait_for(lambda: UP in k.stdout() or not k.alive(), what="the guest or kite's exit")
    assert k.alive(), k.stderr()
    assert k.stop() == SIGTERM_EXIT


@needs_kvm
def test_config_file_without_api(spawn, workdir):
    default_sock = "/run/kite.socket"
    had_default = os.path.exists(default_sock)
    sock = workdir / "never.sock"
    k = spawn("--api-sock", sock, "--config-file", write(workdir, example_config(nested_nulls=False)),
              "--no-api", api=False)
    k.wait_console(UP)
    assert not sock.exists()
    assert os.path.exists(default_sock) == had_default
    assert k.stop() == SIGTERM_EXIT
    assert k.stderr() == ""


@needs_kvm
def test_config_file_guest_end_ends_kite(kite, workdir):
    cfg = {"boot-source": {"kernel_image_path": str(GUESTS / "reset.elf"), "boot_args": "i8042"},
           "machine-config": {"vcpu_count": 1, "mem_size_mib": 32}, "drives": [], "vsock": None}
    r = run([kite, "--config-file", write(workdir, cfg), "--no-api", "--metrics-path", workdir / "m.json"])
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    # One metrics line when the file was opened, one at exit.
    assert len(metric_lines(workdir / "m.json")) == 2


def test_no_api_needs_a_config_file(kite, workdir):
    r = run([kite, "--api-sock", workdir / "s.sock", "--no-api"])
    assert r.returncode == 2
    assert "--no-api" in error_line(r)
    assert not (workdir / "s.sock").exists()


def _bad_configs():
    base = {"boot-source": {"kernel_image_path": str(GUESTS / "idle.elf")}}

    def with_(**secs):
        return json.dumps({**base, **{k.replace("_", "-"): v for k, v in secs.items()}})
    return [
        ("missing file", None, "no-such.json"),
        ("empty file", "", "vm.json"),
        ("invalid JSON", '{"boot-source": {"kernel_image_path": "x"', "vm.json"),
        ("not an object", "[]", "object"),
        ("unknown section", with_(kite_turbo={"on": True}), "kite-turbo"),
        ("unknown member", with_(machine_config={"vcpu_count": 1, "mem_size_mib": 64, "turbo": 1}), "turbo"),
        ("wrong type", with_(machine_config={"vcpu_count": "2", "mem_size_mib": 64}), "vcpu_count"),
        ("wrong type of section", with_(machine_config=[1]), "machine-config"),
        ("missing required", json.dumps({"boot-source": {"boot_args": "x"}}), "kernel_image_path"),
        ("bad enum", with_(machine_config={"vcpu_count": 1, "mem_size_mib": 64, "huge_pages": "1G"}),
         "huge_pages"),
        ("out of bounds", with_(machine_config={"vcpu_count": 33, "mem_size_mib": 64}), "vcpu_count"),
        ("duplicate key", '{"boot-source": {"kernel_image_path": "a", "kernel_image_path": "b"}}',
         "kernel_image_path"),
        ("no boot source", json.dumps({"machine-config": {"vcpu_count": 1, "mem_size_mib": 64}}), "kernel"),
        ("kite cannot: SMT", with_(machine_config={"vcpu_count": 2, "mem_size_mib": 64, "smt": True}), "SMT"),
        ("kite cannot: vhost-user drive",
         with_(drives=[{"drive_id": "d", "is_root_device": False, "path_on_host": "/dev/null",
                        "socket": "/tmp/vhost.sock"}]), "vhost-user"),
        ("missing kernel", json.dumps({"boot-source": {"kernel_image_path": "/kite/no-such-kernel"}}),
         "/kite/no-such-kernel"),
    ]


@pytest.mark.parametrize("what, content, names", _bad_configs(), ids=lambda v: v if isinstance(v, str)
                         and " " in v else None)
def test_bad_config_file(kite, workdir, what, content, names):
    path = workdir / "no-such.json" if content is None else write(workdir, content)
    sock = workdir / "api.sock"
    r = run([kite, "--api-sock", sock, "--config-file", path])
    assert r.returncode != 0, what
    line = error_line(r)
    assert names in line, line
    assert not sock.exists()


@needs_kvm
@pytest.mark.parametrize("section, value", [
    ("pmem", [{"id": "pmem0", "path_on_host": "/dev/null"}]),
    ("mmds-config", {"network_interfaces": []}),
    ("memory-hotplug", {"total_size_mib": 1024}),
])
def test_config_sections_kite_cannot_do_are_refused(spawn, workdir, section, value):
    cfg = {"boot-source": {"kernel_image_path": str(GUESTS / "idle.elf")}, section: value}
    k = spawn("--config-file", write(workdir, cfg), wait=False)
    wait_for(lambda: UP in k.stdout() or not k.alive(), what="the guest or kite's exit")
    assert not k.alive() and k.proc.returncode != 0
    assert section in error_line_of(k)


def test_config_error_is_one_line_whatever_the_value(kite, workdir):
    cfg = {"boot-source": {"kernel_image_path": "x"},
           "machine-config": {"vcpu_count": 1, "mem_size_mib": 64, "huge_pages": "1G\nkite: error: forged"}}
    r = run([kite, "--api-sock", workdir / "s.sock", "--config-file", write(workdir, cfg)])
    assert r.returncode == 2
    assert "huge_pages" in error_line(r)


def error_line_of(k):
    lines = k.stderr().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kite: error: "), lines
    return lines[0]


# ------------------------------------------------------------ --api-sock ----

def test_api_sock_path_exists(kite, workdir):
    path = workdir / "taken"
    path.write_text("someone else's file\n")
    r = run([kite, "--api-sock", path])
    assert r.returncode == 2
    line = error_line(r)
    assert str(path) in line and "in use" in line, line
    assert path.read_text() == "someone else's file\n"


def test_api_sock_of_a_running_kite(spawn, kite):
    k = spawn()
    r = run([kite, "--api-sock", k.sock])
    assert r.returncode == 2
    assert str(k.sock) in error_line(r)
    assert k.req("GET", "/").status == 200


def test_api_sock_directory_missing(kite, workdir):
    path = workdir / "no" / "dir.sock"
    r = run([kite, "--api-sock", path])
    assert r.returncode != 0
    assert str(path) in error_line(r)


def test_api_sock_path_too_long(kite):
    path = "/tmp/" + "s" * 120
    r = run([kite, "--api-sock", path])
    assert r.returncode == 2
    assert "too long" in error_line(r)
    assert not os.path.exists(path)


# ---------------------------------------------------------------- metrics ----

def _check_groups(line):
    assert isinstance(line["utc_timestamp_ms"], int)
    for g in ("get_api_requests", "put_api_requests", "patch_api_requests"):
        assert isinstance(line[g], dict) and all(isinstance(v, int) for v in line[g].values()), line


def test_metrics_path_lines_at_start_flush_and_exit(spawn, workdir):
    m = workdir / "metrics.json"
    k = spawn("--metrics-path", m)
    first = wait_lines(m, 1)
    assert len(first) == 1
    _check_groups(first[0])
    for _ in range(2):
        assert k.req("PUT", "/actions", {"action_type": "InstanceStart"}).status == 400  # no kernel
    assert k.req("GET", "/version").status == 200
    assert k.curl("PUT", "/actions", {"action_type": "FlushMetrics"}).status == 204
    lines = metric_lines(m)
    assert len(lines) == 2, lines  # written before the reply
    _check_groups(lines[1])
    # Counts since the previous line: two failed starts and the flush itself.
    assert lines[1]["put_api_requests"]["actions_count"] == 3
    assert lines[1]["get_api_requests"]["vmm_version_count"] == 1
    assert lines[1]["utc_timestamp_ms"] >= lines[0]["utc_timestamp_ms"]
    assert k.stop() == SIGTERM_EXIT
    lines = metric_lines(m)
    assert len(lines) == 3, lines
    _check_groups(lines[2])
    assert lines[2]["put_api_requests"]["actions_count"] == 0


def test_put_metrics_through_the_api(spawn):
    k = spawn()
    m = k.dir / "api-metrics.json"
    assert k.req("PUT", "/metrics", {"metrics_path": str(m)}).status == 204
    lines = metric_lines(m)
    assert len(lines) == 1, lines
    _check_groups(lines[0])
    assert lines[0]["put_api_requests"]["metrics_count"] == 1
    assert k.req("PUT", "/machine-config", {"vcpu_count": 2, "mem_size_mib": 64}).status == 204
    assert k.req("PUT", "/actions", {"action_type": "FlushMetrics"}).status == 204
    lines = metric_lines(m)
    assert len(lines) == 2
    assert lines[1]["put_api_requests"]["machine_cfg_count"] == 1
    assert lines[1]["put_api_requests"]["actions_count"] == 1
    assert k.stop() == SIGTERM_EXIT
    assert len(metric_lines(m)) == 3


def test_flush_metrics_without_metrics(spawn):
    k = spawn()
    r = k.req("PUT", "/actions", {"action_type": "FlushMetrics"})
    assert r.status == 400 and r.fault
    assert k.alive()


def test_metrics_file_cannot_be_opened(kite, workdir, spawn):
    bad = workdir / "no" / "metrics.json"
    r = run([kite, "--api-sock", workdir / "s.sock", "--metrics-path", bad])
    assert r.returncode == 2
    assert str(bad) in error_line(r)
    k = spawn()
    r = k.req("PUT", "/metrics", {"metrics_path": str(bad)})
    assert r.status == 400 and str(bad) in r.fault


# ----------------------------------------------------------------- logger ----

def test_put_logger_sends_warnings_to_its_file(spawn):
    k = spawn()
    log = k.dir / "kite.log"
    assert k.req("PUT", "/logger", {"log_path": str(log), "level": "Warning"}).status == 204
    r = k.req("PUT", "/machine-config", {"vcpu_count": 0, "mem_size_mib": 64})
    assert r.status == 400
    wait_for(lambda: log.exists() and "vcpu_count" in log.read_text(), what="the warning in the log file")
    lines = log.read_text().splitlines()
    assert lines and all(line.startswith("kite: warning: ") for line in lines), lines
    assert "vcpu_count" not in k.stderr()


def test_one_log_line_per_refused_request(spawn):
    k = spawn()
    log = k.dir / "kite.log"
    assert k.req("PUT", "/logger", {"log_path": str(log), "level": "Warning"}).status == 204
    for key, value in [("huge_pages", "2M\nkite: error: forged"), ("kite\nkite: error: forged", 1)]:
        r = k.req("PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": 64, key: value})
        assert r.status == 400 and "forged" in r.fault
    wait_for(lambda: log.read_text().count("forged") == 2, what="both warnings")
    lines = log.read_text().splitlines()
    assert len(lines) == 2 and all(line.startswith("kite: warning: ") for line in lines), lines


def test_put_logger_level_error_hides_warnings(spawn):
    k = spawn()
    log = k.dir / "kite.log"
    assert k.req("PUT", "/logger", {"log_path": str(log), "level": "Error"}).status == 204
    assert k.req("GET", "/nope").status == 400
    assert k.req("PUT", "/logger", {"level": "Warning"}).status == 204
    assert k.req("GET", "/nope-again").status == 400
    wait_for(lambda: "nope-again" in log.read_text(), what="the second warning")
    assert "/nope." not in log.read_text()


def test_log_path_flag(spawn, workdir):
    log = workdir / "flag.log"
    k = spawn("--log-path", log)
    assert k.req("DELETE", "/").status == 400
    wait_for(lambda: "DELETE" in log.read_text(), what="the warning in --log-path's file")
    assert k.stderr() == ""


# --------------------------------------------------------------------- --id ----

def test_id_in_instance_info(spawn):
    k = spawn("--id", "kite-vm-7")
    r = k.req("GET", "/")
    assert r.status == 200 and r.json["id"] == "kite-vm-7", r


def test_id_default(spawn):
    assert spawn().req("GET", "/").json["id"] == "anonymous-instance"


@pytest.mark.parametrize("bad", ["", "x" * 65])
def test_id_refused(kite, workdir, bad):
    r = run([kite, "--api-sock", workdir / "s.sock", "--id", bad])
    assert r.returncode == 2
    assert "--id" in error_line(r)


@needs_kvm
def test_config_file_with_a_missing_kernel_exits_4(kite, workdir):
    # The same exit code as `kite run --kernel` with a missing file (README table).
    missing = workdir / "no-such-kernel"
    cfg = {"boot-source": {"kernel_image_path": str(missing)}}
    r = run([kite, "--config-file", write(workdir, cfg), "--no-api"])
    assert r.returncode == 4, r.stderr
    line = error_line(r)
    assert str(missing) in line and "No such file or directory" in line, line


def test_logger_off_silences_warnings(spawn):
    k = spawn()
    log = k.dir / "kite.log"
    assert k.req("PUT", "/logger", {"log_path": str(log), "level": "Off"}).status == 204
    assert k.req("GET", "/nope").status == 400
    assert k.req("GET", "/").status == 200  # the refused request has been handled
    assert log.read_text() == ""

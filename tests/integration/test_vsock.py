"""The vsock device's host socket (uds_path) at start-up: a path kite cannot use
is one `kite: error:` line and exit 1 (a device could not start), from the
command line and from a Firecracker config file; a stale socket file is
replaced, a live one or another file is left alone, and kite removes its socket
when it exits. The data path is in tests/unit/test_virtio_vsock.c and the lab."""
import json
import socket

from kitetest import error_line, needs_kvm, run

pytestmark = needs_kvm


def _run(kite, guests, uds):
    return run([kite, "run", "--kernel", guests / "hello.elf", "--vsock", f"cid=3,uds={uds}"])


def test_uds_in_a_missing_directory(kite, guests, tmp_path):
    uds = tmp_path / "nope" / "v.sock"
    r = _run(kite, guests, uds)
    assert r.returncode == 1
    assert error_line(r) == (f"kite: error: vsock uds_path '{uds}': directory "
                             f"'{tmp_path / 'nope'}' does not exist")


def test_uds_in_a_missing_directory_from_a_config_file(kite, guests, tmp_path):
    uds = tmp_path / "nope" / "v.sock"
    cfg = {"boot-source": {"kernel_image_path": str(guests / "hello.elf")},
           "machine-config": {"vcpu_count": 1, "mem_size_mib": 32},
           "vsock": {"guest_cid": 3, "uds_path": str(uds)}}
    path = tmp_path / "vm.json"
    path.write_text(json.dumps(cfg))
    r = run([kite, "--config-file", path, "--no-api"])
    assert r.returncode == 1
    assert error_line(r).endswith(f"vsock uds_path '{uds}': directory "
                                  f"'{tmp_path / 'nope'}' does not exist")


def test_uds_is_another_file(kite, guests, tmp_path):
    uds = tmp_path / "v.sock"
    uds.write_text("keep me")
    r = _run(kite, guests, uds)
    assert r.returncode == 1
    assert error_line(r) == f"kite: error: vsock uds_path '{uds}' exists and is not a socket"
    assert uds.read_text() == "keep me"


def test_uds_in_use(kite, guests, tmp_path):
    uds = tmp_path / "v.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(str(uds))
        s.listen(1)
        r = _run(kite, guests, uds)
        assert r.returncode == 1
        assert error_line(r) == f"kite: error: vsock uds_path '{uds}' is in use by another process"
        assert uds.exists()


def test_uds_too_long(kite, guests, tmp_path):
    # The command line takes up to 99 bytes; kite needs room for "_<port>".
    uds = "/tmp/" + "v" * 94
    r = _run(kite, guests, uds)
    assert r.returncode == 1
    assert "is too long" in error_line(r)


def test_stale_socket_is_replaced_and_removed_at_exit(kite, guests, tmp_path):
    uds = tmp_path / "v.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(uds))
    s.close()  # the file stays, nobody listens: what a killed VMM leaves
    assert uds.exists()
    r = _run(kite, guests, uds)
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout == "hello from a kite test guest\n"
    assert not uds.exists()

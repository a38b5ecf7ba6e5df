"""--disk on this host: a bad image is one `kite: error:` line naming the drive
and the path, with exit code 4 (image), before any guest runs; duplicate drive
ids are a usage error (2); good disks become virtio-blk devices in the order
given, with the capacity of their whole sectors. Tiny guests stand in for a
real driver (the lab boots Linux on the disks: tests/lab/test_lab_blk.py)."""
import os
import stat

import pytest

from kitetest import error_line, needs_kvm, run


@pytest.fixture
def hello(guests):
    return guests / "hello.elf"


@pytest.fixture
def image(tmp_path):
    """A 1 MiB + 100 byte raw image: 2048 whole sectors and a tail."""
    p = tmp_path / "disk.img"
    p.write_bytes(bytes(range(256)) * 4096 + b"t" * 100)
    return p


def kite_disks(kite, kernel, *disks, level=None):
    cmd = [kite, "run", "--kernel", kernel]
    for d in disks:
        cmd += ["--disk", d]
    if level:
        cmd += ["--level", level]
    return run(cmd)


# ---- usage (exit 2): refused while parsing, before /dev/kvm ----

@pytest.mark.parametrize("disks, message", [
    (["a.img,id=root", "b.img,id=root"], "duplicate drive id 'root'"),
    # an explicit id may not take the name another disk got by default
    (["a.img", "b.img,id=disk0"], "duplicate drive id 'disk0'"),
    (["a.img,id=disk1", "b.img"], "duplicate drive id 'disk1'"),
])
def test_duplicate_drive_ids(kite, disks, message):
    r = kite_disks(kite, "/nonexistent-kernel", *disks)
    assert r.returncode == 2
    assert message in error_line(r)


# ---- image errors (exit 4) ----

@needs_kvm
def test_missing_image(kite, hello, tmp_path):
    path = tmp_path / "missing.img"
    r = kite_disks(kite, hello, f"{path},id=root")
    assert r.returncode == 4
    assert error_line(r) == f"kite: error: disk 'root' ('{path}'): No such file or directory"


@needs_kvm
@pytest.mark.parametrize("ro", ["", ",ro"])
def test_directory_as_image(kite, hello, tmp_path, ro):
    # O_RDONLY opens a directory: read-only disks are checked for it too
    r = kite_disks(kite, hello, f"{tmp_path},id=root{ro}")
    assert r.returncode == 4
    assert error_line(r) == f"kite: error: disk 'root' ('{tmp_path}'): Is a directory"


@needs_kvm
def test_character_device_as_image(kite, hello):
    r = kite_disks(kite, hello, "/dev/null,id=root")
    assert r.returncode == 4
    assert error_line(r) == ("kite: error: disk 'root' ('/dev/null'): "
                             "not a regular file or block device")


@needs_kvm
def test_fifo_as_image_does_not_hang(kite, hello, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    r = kite_disks(kite, hello, f"{fifo},ro,id=root")
    assert r.returncode == 4
    assert error_line(r).endswith("not a regular file or block device")


@needs_kvm
@pytest.mark.skipif(os.geteuid() == 0, reason="root opens files whatever their mode")
def test_unwritable_image(kite, hello, image):
    os.chmod(image, stat.S_IRUSR)
    r = kite_disks(kite, hello, f"{image},id=root")
    assert r.returncode == 4
    assert error_line(r) == f"kite: error: disk 'root' ('{image}'): Permission denied"
    # read-only needs no write permission
    assert kite_disks(kite, hello, f"{image},ro,id=root").returncode == 0


@needs_kvm
def test_bad_second_disk_is_named(kite, hello, image, tmp_path):
    missing = tmp_path / "nope.img"
    r = kite_disks(kite, hello, str(image), str(missing))
    assert r.returncode == 4
    # the default id of the second disk
    assert error_line(r) == f"kite: error: disk 'disk1' ('{missing}'): No such file or directory"


# ---- good disks ----

@needs_kvm
def test_disks_created_in_order(kite, hello, image, tmp_path):
    second = tmp_path / "second.img"
    second.write_bytes(b"\0" * 4096)
    r = kite_disks(kite, hello, f"{image},id=root", f"{second},ro,id=data,serial=SER1",
                   level="info")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "hello from a kite test guest\n"
    lines = [line for line in r.stderr.splitlines() if "virtio-blk" in line]
    assert lines == [
        # capacity in whole sectors: the 100-byte tail is not reachable
        f"kite: info: virtio-blk0: disk 'root' ('{image}'), 2048 sectors",
        f"kite: info: virtio-blk1: disk 'data' ('{second}'), 8 sectors, read-only",
    ]
    # nothing was written to the images by creating the devices
    assert image.read_bytes() == bytes(range(256)) * 4096 + b"t" * 100


@needs_kvm
def test_empty_image(kite, hello, tmp_path):
    empty = tmp_path / "empty.img"
    empty.write_bytes(b"")
    r = kite_disks(kite, hello, f"{empty},id=e", level="info")
    assert r.returncode == 0, r.stderr
    assert f"virtio-blk0: disk 'e' ('{empty}'), 0 sectors" in r.stderr

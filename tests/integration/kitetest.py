"""Helpers for the integration tests (a plain module, not conftest, so test files
can import it by a name no other test directory uses)."""
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GUESTS = REPO / "build" / "guests"
TIMEOUT = 20  # seconds; a tiny guest runs in milliseconds, so this only catches hangs


def kvm_usable():
    return os.access("/dev/kvm", os.R_OK | os.W_OK)


needs_kvm = pytest.mark.skipif(not kvm_usable(), reason="/dev/kvm is not usable here")


def run(cmd, timeout=TIMEOUT, **kw):
    """Runs a command with stdin from /dev/null (so kite starts no console input
    thread) and text output; a hang fails the test via TimeoutExpired."""
    kw.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                          timeout=timeout, **kw)


def error_line(r):
    """The one `kite: error: ...` line of a failed run (asserts there is exactly
    one stderr line and nothing on stdout)."""
    lines = r.stderr.splitlines()
    assert len(lines) == 1, f"expected one error line, got:\n{r.stderr}"
    assert lines[0].startswith("kite: error: "), lines[0]
    assert r.stdout == ""
    return lines[0]

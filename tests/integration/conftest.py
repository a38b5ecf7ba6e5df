"""Session fixtures: build kite and the test guests once.

KITE=/path/to/kite uses that binary (an ASan build, say) instead of `make`'s;
the guests are always built from this tree.
"""
import os
import subprocess
from pathlib import Path

import pytest

from kitetest import GUESTS, REPO


def _make(*targets):
    r = subprocess.run(["make", "-s", *targets], cwd=REPO, capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"make -s {' '.join(targets)} failed:\n{r.stdout}{r.stderr}", pytrace=False)


@pytest.fixture(scope="session")
def kite():
    """Path to the kite binary, built once per session."""
    override = os.environ.get("KITE")
    if override:
        path = Path(override).resolve()
        if not os.access(path, os.X_OK):
            pytest.fail(f"KITE={override} is not an executable", pytrace=False)
    else:
        _make()
        path = REPO / "build" / "kite"
    return str(path)


@pytest.fixture(scope="session")
def guests(kite):
    """Directory of the built test guests (build/guests)."""
    _make("guests")
    return GUESTS

"""Test setup. MPyC parses sys.argv when imported: reset it before anything imports mpyc."""

import os
import sys
from pathlib import Path

sys.argv = sys.argv[:1]
os.environ.setdefault("JAX_ENABLE_X64", "1")
os.environ.setdefault("JAX_ENABLE_COMPILATION_CACHE", "0")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Tests point FLAIMSIM_CACHE at temporary folders; numba's compiled umap-learn functions
# (federation.umap_embedding) may outlive them (~15 s of compiling per fresh process; a new
# virtual environment, as CI's, compiles once: numba keys its cache by the source path).
os.environ.setdefault("NUMBA_CACHE_DIR",
                      str(Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                          / "flaimsim" / "numba"))

import pytest  # noqa: E402



@pytest.fixture(scope="session")
def adult_dir() -> Path:
    """``$FLAIMSIM_ADULT_DIR`` if set, else the copy shipped in the package (unpacked into the
    data cache): Adult tests run on any clone."""
    if os.environ.get("FLAIMSIM_ADULT_DIR"):
        return Path(os.environ["FLAIMSIM_ADULT_DIR"])
    from flaimsim.datasets.store import shipped_pgm_dir

    shipped = shipped_pgm_dir("adult")
    assert shipped is not None, "the package ships Adult (flaimsim/datasets/files)"
    return shipped

"""Test setup. MPyC parses sys.argv when imported: reset it before anything imports mpyc."""

import os
import sys

sys.argv = sys.argv[:1]
os.environ.setdefault("JAX_ENABLE_X64", "1")
os.environ.setdefault("JAX_ENABLE_COMPILATION_CACHE", "0")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

ADULT_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "adult"
if os.environ.get("FLAIMSIM_ADULT_DIR"):
    ADULT_DIR = Path(os.environ["FLAIMSIM_ADULT_DIR"])


@pytest.fixture(scope="session")
def adult_dir() -> Path:
    if not (ADULT_DIR / "adult.csv").exists():
        pytest.skip(f"Adult data not found at {ADULT_DIR} (set FLAIMSIM_ADULT_DIR)")
    return ADULT_DIR

"""Shared fixtures: real data from ../shared/data (skipped with a reason when absent) and CPU-only determinism."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the CLI does; must precede the torch import

import pytest  # noqa: E402
import torch  # noqa: E402
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

SHARED_DATA = Path(os.environ.get("DINOMED_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of the real sample data (CVC-ClinicDB, HIT-UAV, OCT); skips the test when it is not there."""
    if not (SHARED_DATA / "SOURCES.md").is_file():
        pytest.skip(f"real data not found at {SHARED_DATA} (set DINOMED_SHARED_DATA to its folder)")
    return SHARED_DATA

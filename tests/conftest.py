"""Shared test set-up.

Tests that need real images read CamVid from ``../shared/data/camvid`` beside the repository (or
``$SCALECONTRAST_CAMVID``). On a developer machine without it they are skipped with a reason; in CI
(``CI`` set) a missing copy is an error, so no test is ever skipped silently there.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DEFAULT_CAMVID = Path(__file__).resolve().parents[2] / "shared" / "data" / "camvid"
CAMVID = Path(os.environ.get("SCALECONTRAST_CAMVID", DEFAULT_CAMVID))


def pytest_sessionstart(session: pytest.Session) -> None:
    if os.environ.get("CI") and not (CAMVID / "train").is_dir():
        raise pytest.UsageError(f"CI: the CamVid copy the tests need is missing at {CAMVID}")

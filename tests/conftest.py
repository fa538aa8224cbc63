"""Shared fixtures: the demo rig, a generated ring, the virtual subject, the real demo keypoints."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from rtkin.sim import virtual

SHARED_DATA = Path(os.environ.get("RTKIN_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
DEMO_KEYPOINTS = SHARED_DATA / "pose2sim_demo_single_coco17"


@pytest.fixture(scope="session")
def demo_rig():
    return virtual.demo_rig()


@pytest.fixture(scope="session")
def ring8():
    return virtual.ring_rig(8)


@pytest.fixture(scope="session")
def subject():
    """The default virtual subject: 12 s at 60 Hz, HALPE_26 truth."""
    return virtual.simulate_subject(virtual.MotionSettings(duration_s=12.0, fps=60.0, seed=0))


@pytest.fixture(scope="session")
def demo_keypoints_dir():
    if not DEMO_KEYPOINTS.is_dir():
        pytest.skip(f"real demo keypoints not found at {DEMO_KEYPOINTS} (../shared/data beside the repo)")
    return DEMO_KEYPOINTS


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def require_blazepose() -> None:
    """Skip (with the reason) when MediaPipe BlazePose cannot run here; fail under CI, whose test
    extra brings it."""
    from rtkin.capture.blazepose import blazepose_status

    ok, why = blazepose_status("full")
    if not ok and os.environ.get("CI"):
        pytest.fail(f"BlazePose not available in CI: {why}")
    if not ok:
        pytest.skip(f"BlazePose not available: {why}")

"""More movements for the virtual subject: lunges, trunk bends, marching in place.

Each pattern is ``f(t (T,) s, rng, amplitude) -> {coordinate: (T,) rad}``: deviations from the
neutral standing pose, smooth and zero (with zero slope) at the start of each repetition, so the
schedule of :class:`rtkin.sim.virtual.MotionSettings` can blend them. Signs (OpenSim model):
``pelvis_tilt`` < 0 and ``L5_S1_Flex_Ext`` < 0 lean forward, ``hip_flexion`` > 0 moves the thigh
forward, ``knee_angle`` > 0 flexes, ``ankle_angle`` > 0 is dorsiflexion.
"""

from __future__ import annotations

import numpy as np

__all__ = ["EXTRA_PATTERNS"]


def _deg(x):
    return np.deg2rad(x)


def _cycle(t, period):
    """0 -> 1 -> 0 over each period, smooth (1 - cos) / 2."""
    return 0.5 - 0.5 * np.cos(2 * np.pi * t / period)


def _lunge(t, rng, amp):
    """Forward lunges, legs alternating each repetition; trunk upright, arms slightly forward."""
    period = rng.uniform(2.2, 2.8)
    d = _cycle(t, period) * amp * rng.uniform(0.9, 1.1)
    right_front = (np.floor(t / period).astype(int) % 2) == 0
    out: dict[str, np.ndarray] = {"pelvis_tilt": _deg(-6 * d), "L5_S1_Flex_Ext": _deg(4 * d),
                                  "pelvis_list": _deg(np.where(right_front, 3, -3) * d)}
    for side, front in (("r", right_front), ("l", ~right_front)):
        out[f"hip_flexion_{side}"] = _deg(np.where(front, 70, -18) * d)
        out[f"knee_angle_{side}"] = _deg(np.where(front, 85, 80) * d)
        out[f"ankle_angle_{side}"] = _deg(np.where(front, 18, -12) * d)
        out[f"hip_adduction_{side}"] = _deg(np.where(front, -4, 2) * d)
        out[f"arm_flex_{side}"] = _deg(25 * d)
        out[f"elbow_flex_{side}"] = _deg(35 * d)
    return out


def _trunk_bend(t, rng, amp):
    """Bends: forward (hips and lumbar), then to one side with a twist, alternating."""
    period = rng.uniform(2.6, 3.2)
    d = _cycle(t, period) * amp * rng.uniform(0.9, 1.1)
    forward = (np.floor(t / period).astype(int) % 2) == 0
    side = np.where((np.floor(t / (2 * period)).astype(int) % 2) == 0, 1.0, -1.0)
    f = np.where(forward, d, 0.0)
    s = np.where(forward, 0.0, d) * side
    out = {"pelvis_tilt": _deg(-35 * f), "L5_S1_Flex_Ext": _deg(-30 * f),
           "L5_S1_Lat_Bending": _deg(22 * s), "L5_S1_axial_rotation": _deg(12 * s),
           "pelvis_list": _deg(-4 * s)}
    for sd in ("r", "l"):
        out[f"hip_flexion_{sd}"] = _deg(35 * f)  # thighs stay about vertical
        out[f"knee_angle_{sd}"] = _deg(8 * f)
        out[f"arm_flex_{sd}"] = _deg(45 * f)
        out[f"elbow_flex_{sd}"] = _deg(15 * f)
    out["arm_add_r"] = _deg(-15 * np.clip(s, 0, None))
    out["arm_add_l"] = _deg(-15 * np.clip(-s, 0, None))
    return out


def _march(t, rng, amp):
    """Walking in place with high knees and bent, swinging arms."""
    f = rng.uniform(0.8, 1.0)
    phi = f * t
    out: dict[str, np.ndarray] = {}
    for side, ph in (("r", phi), ("l", phi + 0.5)):
        lift = np.clip(np.sin(2 * np.pi * ph), 0.0, None) ** 1.5
        out[f"hip_flexion_{side}"] = _deg(5 + 55 * lift)
        out[f"knee_angle_{side}"] = _deg(5 + 70 * lift)
        out[f"ankle_angle_{side}"] = _deg(-10 * lift)
        out[f"arm_flex_{side}"] = _deg(-30 * np.sin(2 * np.pi * ph))
        out[f"elbow_flex_{side}"] = _deg(70 + 15 * np.sin(2 * np.pi * ph))
    out["pelvis_list"] = _deg(3 * np.sin(2 * np.pi * phi))
    out["pelvis_rotation"] = _deg(4 * np.sin(2 * np.pi * phi))
    out["L5_S1_axial_rotation"] = _deg(-3 * np.sin(2 * np.pi * phi))
    return {k: v * amp for k, v in out.items()}


#: name -> pattern (registered in :mod:`rtkin.sim.virtual`'s schedule).
EXTRA_PATTERNS = {"lunge": _lunge, "trunk_bend": _trunk_bend, "march": _march}

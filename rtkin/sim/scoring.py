"""Joint angles against the virtual subject's truth: per-coordinate RMSE, joint rotation errors
(independent of how a rotation is split into coordinates), the first seconds against the rest,
and shoulder flips.

Estimates are ``(T, Q)`` arrays in the truth's coordinate order (rad / m, NaN = no output that
frame); frames are the truth's frame indices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rtkin.core import assets

__all__ = ["ROWS", "SCORED", "JOINTS", "BodyOrientations", "coordinate_rmse", "rotation_errors", "longest_run",
           "Score", "score"]

#: (row label, right coordinate, left coordinate or None): the 20 scored coordinates.
ROWS = (
    ("pelvis tilt", "pelvis_tilt", None),
    ("pelvis list", "pelvis_list", None),
    ("pelvis rotation", "pelvis_rotation", None),
    ("hip flexion", "hip_flexion_r", "hip_flexion_l"),
    ("hip adduction", "hip_adduction_r", "hip_adduction_l"),
    ("hip rotation", "hip_rotation_r", "hip_rotation_l"),
    ("knee", "knee_angle_r", "knee_angle_l"),
    ("ankle", "ankle_angle_r", "ankle_angle_l"),
    ("lumbar flexion", "L5_S1_Flex_Ext", None),
    ("shoulder flexion", "arm_flex_r", "arm_flex_l"),
    ("shoulder adduction", "arm_add_r", "arm_add_l"),
    ("elbow", "elbow_flex_r", "elbow_flex_l"),
)
SCORED = tuple(c for _, r, l in ROWS for c in (r, l) if c)

#: joint rotation angles: (label, parent body, child bodies right/left)
JOINTS = (("hip (pelvis->femur)", "pelvis", ("femur_r", "femur_l")),
          ("shoulder (torso->hum)", "torso", ("humerus_r", "humerus_l")))

#: a shoulder flip: joint rotation error above this ...
FLIP_DEG = 45.0
#: ... for more than this many consecutive frames
FLIP_FRAMES = 5


def _wrap(x):
    return (x + np.pi) % (2 * np.pi) - np.pi


def coordinate_rmse(est: np.ndarray, truth: np.ndarray, names, mask: np.ndarray | None = None,
                    coordinates=SCORED) -> dict[str, float]:
    """Per coordinate RMSE, deg, over the frames of ``mask`` ((T,) bool) where the estimate exists."""
    names = list(names)
    m = np.ones(est.shape[0], dtype=bool) if mask is None else mask
    out = {}
    for n in coordinates:
        j = names.index(n)
        d = _wrap(est[m, j] - truth[m, j])
        d = d[np.isfinite(d)]
        out[n] = float(np.degrees(np.sqrt(np.mean(d ** 2)))) if d.size else np.nan
    return out


class BodyOrientations:
    """OpenSim forward kinematics of the generic model: body rotations in ground per frame (a
    body's orientation does not depend on the segment scale factors)."""

    def __init__(self, bodies=("pelvis", "torso", "femur_r", "femur_l", "humerus_r", "humerus_l")):
        import opensim

        opensim.Logger.setLevelString("error")
        self.model = opensim.Model(str(assets.model_path()))
        self.state = self.model.initSystem()
        cs = self.model.getCoordinateSet()
        self.coords = {cs.get(i).getName(): cs.get(i) for i in range(cs.getSize())}
        self.bodies = {b: self.model.getBodySet().get(b) for b in bodies}

    def __call__(self, values: np.ndarray, names) -> dict[str, np.ndarray]:
        """(T, Q) coordinates -> body -> (T, 3, 3) rotation ground<-body (NaN where any scored
        coordinate is NaN; other NaN coordinates take their default)."""
        names = list(names)
        T = values.shape[0]
        out = {b: np.full((T, 3, 3), np.nan) for b in self.bodies}
        scored = [names.index(n) for n in SCORED if n in names]
        for f in range(T):
            row = values[f]
            if not np.isfinite(row[scored]).all():
                continue
            for n, v in zip(names, row):
                c = self.coords.get(n)
                if c is not None:
                    c.setValue(self.state, float(v) if np.isfinite(v) else c.getDefaultValue(), False)
            self.model.realizePosition(self.state)
            for b, body in self.bodies.items():
                qt = body.getTransformInGround(self.state).R().convertRotationToQuaternion()
                out[b][f] = _quat_matrix(qt.get(0), qt.get(1), qt.get(2), qt.get(3))
        return out


def _quat_matrix(w: float, x: float, y: float, z: float) -> np.ndarray:
    """(3, 3) rotation matrix of a unit quaternion (w, x, y, z)."""
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def rotation_errors(truth_R: dict[str, np.ndarray], est_R: dict[str, np.ndarray],
                    joints=JOINTS) -> dict[str, np.ndarray]:
    """Per joint child body, (T,) angle of R_rel_truth^T R_rel_est, deg (NaN where no estimate).

    ``joints``: (label, parent body, child bodies) rows, as :data:`JOINTS`."""
    out = {}
    for _, parent, children in joints:
        for child in children:
            rel_t = np.einsum("tji,tjk->tik", truth_R[parent], truth_R[child])
            rel_e = np.einsum("tji,tjk->tik", est_R[parent], est_R[child])
            d = np.einsum("tji,tjk->tik", rel_t, rel_e)
            cos = np.clip((np.trace(d, axis1=1, axis2=2) - 1) / 2, -1, 1)
            out[child] = np.degrees(np.arccos(cos))
    return out


def longest_run(mask: np.ndarray) -> int:
    """Longest run of consecutive True values."""
    best = run = 0
    for v in np.asarray(mask, dtype=bool):
        run = run + 1 if v else 0
        best = max(best, run)
    return best


@dataclass
class Score:
    """Accuracy of one estimate.

    Attributes:
        rmse, rmse_first, rmse_rest: per coordinate RMSE, deg: whole session, the first
            ``first_s`` seconds, the rest.
        mean, mean_first, mean_rest: their means over :data:`SCORED`, deg.
        rotation: per joint child body (RMS, p95, max) joint rotation error, deg.
        flip_frames: per humerus, the longest run of frames with a rotation error > FLIP_DEG.
        coverage: fraction of the truth's frames with an estimate.
    """

    rmse: dict[str, float]
    rmse_first: dict[str, float]
    rmse_rest: dict[str, float]
    mean: float
    mean_first: float
    mean_rest: float
    rotation: dict[str, tuple[float, float, float]]
    flip_frames: dict[str, int]
    coverage: float

    @property
    def flipped(self) -> bool:
        return any(n > FLIP_FRAMES for n in self.flip_frames.values())


def _nanmean(d: dict[str, float]) -> float:
    v = np.array(list(d.values()))
    return float(np.nanmean(v)) if np.isfinite(v).any() else np.nan


def score(est: np.ndarray, truth_values: np.ndarray, names, fps: float, first_s: float = 2.0,
          mask: np.ndarray | None = None, fk: BodyOrientations | None = None, truth_R=None,
          joints=JOINTS) -> Score:
    """Score an estimate ``(T, Q)`` against the truth ``(T, Q)`` (same coordinate order ``names``).

    ``mask`` (T,) restricts the frames compared (default: every frame with an estimate); the first
    ``first_s`` seconds are counted from frame 0. ``fk`` / ``truth_R``: reuse a forward-kinematics
    object and the truth's body rotations between calls. ``joints``: the joint rotations scored
    (:data:`JOINTS` rows; ``fk`` must know their bodies).
    """
    names = list(names)
    T = truth_values.shape[0]
    have = np.isfinite(est[:, [names.index(n) for n in SCORED]]).all(1)
    m = have if mask is None else (mask & have)
    first = np.arange(T) < int(round(first_s * fps))
    fk = fk or BodyOrientations()
    truth_R = truth_R if truth_R is not None else fk(truth_values, names)
    est_R = fk(np.where(m[:, None], est, np.nan), names)
    rot = rotation_errors(truth_R, est_R, joints)
    rotation, flips = {}, {}
    for child, ang in rot.items():
        a = ang[np.isfinite(ang)]
        rotation[child] = ((float(np.sqrt(np.mean(a ** 2))), float(np.percentile(a, 95)), float(a.max()))
                           if a.size else (np.nan, np.nan, np.nan))
        if child.startswith("humerus"):
            flips[child] = longest_run(np.nan_to_num(ang, nan=0.0) > FLIP_DEG)
    r_all = coordinate_rmse(est, truth_values, names, m)
    r_first = coordinate_rmse(est, truth_values, names, m & first)
    r_rest = coordinate_rmse(est, truth_values, names, m & ~first)
    return Score(r_all, r_first, r_rest, _nanmean(r_all), _nanmean(r_first), _nanmean(r_rest), rotation, flips,
                 float(have.mean()))

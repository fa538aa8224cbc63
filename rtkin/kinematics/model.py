"""The OpenSim model as rtkin uses it: loading with a skeleton's markers (one template per
process, solvers work on clones), the body tree and which markers each coordinate depends on,
uniform per-body scaling in memory, and markers by forward kinematics.

Units: metres, radians; OpenSim ground frame (y up) unless named otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from rtkin.core import assets
from rtkin.core.skeletons import Skeleton

__all__ = ["load_with_markers", "model_path_for", "template_model", "apply_scale", "apply_scale_steps",
           "scale_tool_manual", "marker_points", "neutral_values", "OBSERVABLE_COORDINATES"]

#: Coordinates the keypoints can observe (hips, knees, ankles, pelvis, trunk, shoulders, elbows;
#: not forearm rotation, wrists or toes); the virtual subject drives these.
OBSERVABLE_COORDINATES = (
    "pelvis_tilt", "pelvis_list", "pelvis_rotation", "pelvis_tx", "pelvis_ty", "pelvis_tz",
    "hip_flexion_r", "hip_adduction_r", "hip_rotation_r", "knee_angle_r", "ankle_angle_r",
    "hip_flexion_l", "hip_adduction_l", "hip_rotation_l", "knee_angle_l", "ankle_angle_l",
    "L5_S1_Flex_Ext", "L5_S1_Lat_Bending", "L5_S1_axial_rotation",
    "arm_flex_r", "arm_add_r", "arm_rot_r", "elbow_flex_r",
    "arm_flex_l", "arm_add_l", "arm_rot_l", "elbow_flex_l",
)



_OSIM: Any = None


def _osim():
    """The ``opensim`` module, imported on first use with its logger set to errors only (it
    logs every IK frame otherwise)."""
    global _OSIM
    if _OSIM is None:
        import opensim as osim

        osim.Logger.setLevelString("error")
        _OSIM = osim
    return _OSIM


_TEMPLATES: dict[tuple[str, str], Any] = {}


def load_with_markers(model_path: str | Path, skeleton: Skeleton, extra_marker_set: str | Path = ""):
    """The model with the skeleton's Pose2Sim markers added (markers it already has are kept),
    and the markers of the marker set file ``extra_marker_set`` that it still lacks (e.g. the
    augmented markers of ``Markers_LSTM.xml``).

    Markers of :data:`rtkin.core.skeletons.MARKER_SET_FIXES` come from the marker set named there
    (Pose2Sim's Coco17 set puts RHip on the pelvis at the knee's height)."""
    from rtkin.core.skeletons import MARKER_SET_FIXES

    osim = _osim()
    model = osim.Model(str(model_path))
    path = assets.marker_set_path(skeleton.name)
    markers = osim.MarkerSet(str(path))
    fix_from, fixed = MARKER_SET_FIXES.get(path.name, ("", ()))
    good = osim.MarkerSet(str(assets.marker_set_path(fix_from))) if fixed else None
    have = model.getMarkerSet()
    for i in range(markers.getSize()):
        mk = markers.get(i)
        if mk.getName() in fixed:
            mk = good.get(mk.getName())
        if not have.contains(mk.getName()):
            model.addMarker(mk.clone())
    if extra_marker_set:
        extra = osim.MarkerSet(str(extra_marker_set))
        for i in range(extra.getSize()):
            if not have.contains(extra.get(i).getName()):
                model.addMarker(extra.get(i).clone())
    model.finalizeConnections()
    return model


def model_path_for(settings, model_path: str | Path | None = None) -> Path:
    """The model to solve on: ``model_path``, else ``settings.model``, else Pose2Sim's generic one."""
    return Path(model_path) if model_path else (Path(settings.model) if settings.model else assets.model_path())


def template_model(path: Path, skeleton: Skeleton, extra_marker_set: str | Path = ""):
    """The model at ``path`` with the skeleton's Pose2Sim marker set added, as Pose2Sim does
    (``MarkerSet(file)`` + ``addMarker(marker.clone())``; markers the model already has are kept),
    and the markers of ``extra_marker_set`` (see :func:`load_with_markers`).
    Loaded once per process and never modified: solvers work on clones."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"OpenSim model {path} not found")
    st = Path(path).stat()  # a file rewritten at the same path (a refined scaled model) is reloaded
    key = (str(Path(path).resolve()), skeleton.marker_set, str(extra_marker_set), st.st_mtime_ns, st.st_size)
    model = _TEMPLATES.get(key)
    if model is None:
        model = load_with_markers(path, skeleton, extra_marker_set)
        _TEMPLATES[key] = model
    return model



# ============================================================================ model topology


@dataclass(frozen=True)
class _Topology:
    """Body tree of the model and where the markers and coordinates sit on it."""

    body_parent: dict[str, str]  # child body -> parent body ("ground" for the root)
    joint_bodies: dict[str, tuple[str, str]]  # coordinate -> (parent body, child body)
    marker_body: tuple[str, ...]  # (M,)


def _marker_bodies(body: str, children: dict[str, list[str]], on_body: dict[str, list[int]]) -> list[str]:
    """``body`` if it carries markers, else the nearest descendant bodies that do."""
    if on_body.get(body):
        return [body]
    return [b for c in children.get(body, []) for b in _marker_bodies(c, children, on_body)]


def _nearest_down(body: str, children: dict[str, list[str]], on_body: dict[str, list[int]]) -> set[int]:
    """Markers of the first two marker-carrying levels at and below ``body`` (an axial rotation
    is only seen on the segment after the one it turns: arm rotation on the wrist)."""
    first = _marker_bodies(body, children, on_body)
    second = [b for f in first for c in children.get(f, []) for b in _marker_bodies(c, children, on_body)]
    return {m for b in first + second for m in on_body[b]}


def _subtree(body: str, children: dict[str, list[str]], on_body: dict[str, list[int]]) -> set[int]:
    out = set(on_body.get(body, []))
    for c in children.get(body, []):
        out |= _subtree(c, children, on_body)
    return out


def _nearest_up(body: str, parent: dict[str, str], on_body: dict[str, list[int]]) -> set[int]:
    """Markers on ``body``, or on the nearest ancestor that carries markers (none at ground)."""
    while True:
        if on_body.get(body):
            return set(on_body[body])
        if body not in parent:
            return set()
        body = parent[body]


def _dependencies(topo: _Topology, coordinates: tuple[str, ...]) -> tuple[list[np.ndarray], np.ndarray]:
    """Per coordinate: the indices of the markers nearest its joint, and whether any marker moves
    with it at all (``(Q,)`` bool, False = unobservable)."""
    children: dict[str, list[str]] = {}
    for c, p in topo.body_parent.items():
        children.setdefault(p, []).append(c)
    on_body: dict[str, list[int]] = {}
    for m, b in enumerate(topo.marker_body):
        on_body.setdefault(b, []).append(m)
    deps, observable = [], np.zeros(len(coordinates), dtype=bool)
    for q, name in enumerate(coordinates):
        parent, child = topo.joint_bodies[name]
        down = _nearest_down(child, children, on_body)
        observable[q] = bool(_subtree(child, children, on_body))
        up = _nearest_up(parent, topo.body_parent, on_body) if parent != "ground" else set()
        deps.append(np.array(sorted(down | up), dtype=np.intp))
    return deps, observable



# ============================================================================ scaling in memory


def coordinate_q_indices(coords, state) -> np.ndarray:
    """``(Q,)`` index of each coordinate of ``coords`` (OpenSim ``Coordinate`` s) in ``state``'s Q
    vector, found by perturbation (the state's Q is left as it was). Raises ValueError for a
    coordinate that is not one generalized coordinate."""
    q0 = state.getQ().to_numpy().copy()
    out = np.empty(len(coords), dtype=np.intp)
    for i, c in enumerate(coords):
        v = c.getValue(state)
        c.setValue(state, v + 0.1, False)
        d = state.getQ().to_numpy() - q0
        c.setValue(state, v, False)
        hit = np.flatnonzero(np.abs(d) > 1e-9)
        if hit.size != 1 or abs(d[hit[0]] - 0.1) > 1e-9:
            raise ValueError(f"coordinate {c.getName()} is not a single generalized coordinate q")
        out[i] = hit[0]
    state.setQ(_osim().Vector.createFromMat(q0))
    return out


def neutral_values(model) -> dict[str, float]:
    """Neutral pose: observable coordinates 0 (arms down), the others at the model default."""
    cs = model.getCoordinateSet()
    out = {}
    for i in range(cs.getSize()):
        c = cs.get(i)
        n = c.getName()
        out[n] = 0.0 if (n in OBSERVABLE_COORDINATES and n != "pelvis_ty") else c.getDefaultValue()
    return out


def _uniform_scales(model, factors: Mapping[str, float]) -> list:
    """One OpenSim ``Scale`` (uniform factor) per body of ``factors`` that ``model`` has."""
    osim = _osim()
    bodies = model.getBodySet()
    out = []
    for body, f in factors.items():
        if bodies.contains(body):
            sc = osim.Scale()
            sc.setSegmentName(body)
            sc.setScaleFactors(osim.Vec3(float(f), float(f), float(f)))
            sc.setApply(True)
            out.append(sc)
    return out


def _scale_set(model, factors: Mapping[str, float]):
    """OpenSim ``ScaleSet`` of uniform ``factors`` for the bodies ``model`` has (others ignored)."""
    ss = _osim().ScaleSet()
    for sc in _uniform_scales(model, factors):
        ss.cloneAndAppend(sc)
    return ss


def _final_mass(mass_kg: float | None) -> tuple[bool, float]:
    """(preserve the mass distribution, final total mass or -1) as OpenSim's scalers take them."""
    preserve = mass_kg is not None and mass_kg > 0
    return preserve, float(mass_kg) if preserve else -1.0


def apply_scale(model, factors: Mapping[str, float], mass_kg: float | None = None):
    """Scale ``model`` in place (markers move with their bodies); returns a new state."""
    for _ in apply_scale_steps(model, factors, mass_kg):
        pass
    return model.initSystem()


def scale_tool_manual(model, factors: Mapping[str, float], mass_kg: float | None = None) -> None:
    """Scale ``model`` in place with OpenSim's ScaleTool model scaler (``ModelScaler``, scaling
    order ``manualScale``: the given per-body factors; no measurements, no marker placement).
    The same operation as :func:`apply_scale_steps` (``Model.scale``), which the live switch uses;
    a test checks both give the same model."""
    osim = _osim()
    model.initSystem()
    scaler = osim.ModelScaler()
    scaler.setApply(True)
    order = osim.ArrayStr()
    order.append("manualScale")
    scaler.setScalingOrder(order)
    for sc in _uniform_scales(model, factors):
        scaler.addScale(sc)
    preserve, mass = _final_mass(mass_kg)
    scaler.setPreserveMassDist(preserve)
    scaler.setPrintResultFiles(False)
    if not scaler.processModel(model, "", mass):
        raise RuntimeError("OpenSim ModelScaler (manual scale factors) failed")
    model.initSystem()


def apply_scale_steps(model, factors: Mapping[str, float], mass_kg: float | None = None):
    """:func:`apply_scale` as a generator of short steps (initSystem, then ``Model.scale``), for a
    live loop that spreads the work over frame gaps. The caller calls ``initSystem`` after."""
    state = model.initSystem()
    yield
    if not model.scale(state, _scale_set(model, factors), *_final_mass(mass_kg)):
        raise RuntimeError("OpenSim Model.scale failed")
    yield


def marker_points(model, state, skeleton: Skeleton, values: Mapping[str, float] | None = None) -> np.ndarray:
    """(K, 3) model markers of the skeleton's keypoints, OpenSim ground m (NaN: no marker)."""
    if values is not None:
        cs = model.getCoordinateSet()
        for n, v in values.items():
            cs.get(n).setValue(state, float(v), False)
    model.realizePosition(state)
    ms = model.getMarkerSet()
    marker_of = dict(skeleton.markers)
    out = np.full((skeleton.n_keypoints, 3), np.nan)
    for k, name in enumerate(skeleton.keypoints):
        m = marker_of.get(name)
        if m is not None and ms.contains(m):
            out[k] = ms.get(m).getLocationInGround(state).to_numpy()
    return out



"""Skeleton tables and asset paths, cross-checked against the installed Pose2Sim.

Importing ``Pose2Sim.skeletons`` here is deliberate (rtkin itself never imports it); it may print a
GUI warning.
"""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from rtkin.core import assets
from rtkin.core.skeletons import (
    COCO_133,
    DEFAULT_SKELETON,
    KNOWN_MARKER_SET_ISSUES,
    POSE2SIM_TREE_TYPOS,
    SKELETONS,
    DerivedPoint,
    Skeleton,
    get_skeleton,
)

NAMES = ("HALPE_26", "COCO_17", "COCO_133", "BLAZEPOSE")

# Keypoints absent from Pose2Sim's trees, and the names/parents rtkin gives them.
GENERATED = {
    "HALPE_26": {
        1: ("LEye", "Nose"), 2: ("REye", "Nose"), 3: ("LEar", "Nose"), 4: ("REar", "Nose"),
    },
    "COCO_17": {1: ("LEye", "Nose"), 2: ("REye", "Nose"), 3: ("LEar", "Nose"), 4: ("REar", "Nose")},
    "COCO_133": {91: ("LHandRoot", "LWrist"), 112: ("RHandRoot", "RWrist")},
    "BLAZEPOSE": {1: ("LEyeInner", "Nose"), 3: ("LEyeOuter", "Nose"), 4: ("REyeInner", "Nose"),
                  6: ("REyeOuter", "Nose"), 7: ("LEar", "Nose"), 8: ("REar", "Nose"), 9: ("LMouth", "Nose"),
                  10: ("RMouth", "Nose")},
}
STATED_ROOTS = {"HALPE_26": ("Hip",), "COCO_17": ("Hip",), "COCO_133": ("Hip",), "BLAZEPOSE": ("Hip",)}
N_KEYPOINTS = {"HALPE_26": 26, "COCO_17": 17, "COCO_133": 133, "BLAZEPOSE": 33}


def rtkin_name(skeleton: str, pose2sim_name: str) -> str:
    """The rtkin name of a Pose2Sim tree node (a few Pose2Sim names are typos)."""
    return POSE2SIM_TREE_TYPOS.get(skeleton, {}).get(pose2sim_name, pose2sim_name)

# COCO-WholeBody face flip map (mmpose dataset_info 'swap'), face index = keypoint id - 23.
FACE_FLIP = {
    **{i: 16 - i for i in range(17)},
    **{17 + i: 26 - i for i in range(10)},
    27: 27, 28: 28, 29: 29, 30: 30, 31: 35, 32: 34, 33: 33, 34: 32, 35: 31,
    36: 45, 37: 44, 38: 43, 39: 42, 40: 47, 41: 46, 42: 39, 43: 38, 44: 37, 45: 36, 46: 41, 47: 40,
    48: 54, 49: 53, 50: 52, 51: 51, 52: 50, 53: 49, 54: 48, 55: 59, 56: 58, 57: 57, 58: 56, 59: 55,
    60: 64, 61: 63, 62: 62, 63: 61, 64: 60, 65: 67, 66: 66, 67: 65,
}
# Face points on the subject's left (300-W: jaw 0 and eye 36-41 are on the subject's right).
FACE_LEFT = {*range(9, 17), *range(22, 27), 34, 35, *range(42, 48), 52, 53, 54, 55, 56, 63, 64, 65}


@pytest.fixture(scope="module")
def p2s_skeletons():
    return pytest.importorskip("Pose2Sim.skeletons")


def tree_nodes(root):
    """Pre-order list of anytree nodes (without importing anytree helpers)."""
    out, stack = [], [root]
    while stack:
        node = stack.pop()
        out.append(node)
        stack.extend(reversed(node.children))
    return out


def load_markers(path: Path) -> dict[str, tuple[str, np.ndarray]]:
    """Marker name -> (parent frame path, location (3,) m) from an OpenSim marker set XML."""
    root = ET.parse(path).getroot()
    return {
        m.get("name"): (
            m.findtext("socket_parent_frame").strip(),
            np.array(m.findtext("location").split(), dtype=float),
        )
        for m in root.iter("Marker")
    }


def mirror_frame(frame: str) -> str:
    if frame.endswith("_l"):
        return frame[:-2] + "_r"
    if frame.endswith("_r"):
        return frame[:-2] + "_l"
    return frame


def is_face(sk: Skeleton, i: int) -> bool:
    return sk.name == "COCO_133" and 23 <= i <= 90


# ============================================================== against Pose2Sim's trees
@pytest.mark.parametrize("name", NAMES)
def test_names_and_ids_match_pose2sim_node_for_node(name, p2s_skeletons):
    sk = SKELETONS[name]
    nodes = tree_nodes(getattr(p2s_skeletons, name))
    assert sk.n_keypoints == N_KEYPOINTS[name]
    tree_ids = set()
    for node in nodes:
        if node.id is None:  # virtual node -> derived point
            assert node.name in {d.name for d in sk.derived}, node.name
            assert sk.index(node.name) >= sk.n_keypoints
        else:
            assert sk.keypoints[node.id] == rtkin_name(name, node.name), (node.id, node.name)
            tree_ids.add(node.id)
    missing = set(range(sk.n_keypoints)) - tree_ids
    assert missing == set(GENERATED[name])
    for i, (kp, parent) in GENERATED[name].items():
        assert sk.keypoints[i] == kp
        assert sk.point_parents[i] == sk.index(parent)
    assert len(nodes) + len(missing) == sk.n_points  # nothing extra, nothing left out


@pytest.mark.parametrize("name", NAMES)
def test_parents_match_pose2sim_tree(name, p2s_skeletons):
    sk = SKELETONS[name]
    for node in tree_nodes(getattr(p2s_skeletons, name)):
        expected = -1 if node.parent is None else sk.index(rtkin_name(name, node.parent.name))
        assert sk.point_parents[sk.index(rtkin_name(name, node.name))] == expected, node.name


def test_pose2sim_tree_typos_are_real():
    """The renamed Pose2Sim names exist in its trees; rtkin's names are the marker / IK task names."""
    p2s = pytest.importorskip("Pose2Sim.skeletons")
    for name, typos in POSE2SIM_TREE_TYPOS.items():
        tree = {n.name for n in tree_nodes(getattr(p2s, name))}
        markers = set(load_markers(assets.marker_set_path(name)))
        tasks = {t.get("name") for t in ET.parse(assets.ik_setup_path(name)).getroot().iter("IKMarkerTask")}
        for theirs, ours in typos.items():
            assert theirs in tree and ours not in tree
            assert ours in markers and ours in tasks and theirs not in markers


@pytest.mark.parametrize("name", NAMES)
def test_tree_is_acyclic_with_stated_roots(name, p2s_skeletons):
    sk = SKELETONS[name]
    assert tuple(sk.points[r] for r in sk.roots) == STATED_ROOTS[name]
    assert getattr(p2s_skeletons, name).name == STATED_ROOTS[name][0]
    for i in range(sk.n_points):
        seen, j = set(), i
        while sk.point_parents[j] != -1:
            assert j not in seen, f"cycle through {sk.points[i]}"
            seen.add(j)
            j = sk.point_parents[j]
        assert j in sk.roots
    # keypoint-only view: parent -1 exactly where the parent is a root or a derived point
    for k, p in enumerate(sk.parents):
        full = sk.point_parents[k]
        assert p == (full if 0 <= full < sk.n_keypoints else -1)


@pytest.mark.parametrize("name", NAMES)
def test_derived_points_are_pose2sim_midpoints(name):
    sk = SKELETONS[name]
    expected = {"Hip": ("LHip", "RHip"), "Neck": ("LShoulder", "RShoulder")}  # add_neck_hip_data
    for d in sk.derived:
        assert tuple(sk.keypoints[s] for s in d.sources) == expected[d.name]
    if name == "HALPE_26":
        assert sk.derived == () and {"Hip", "Neck"} <= set(sk.keypoints)
    if name == "BLAZEPOSE":
        assert [d.name for d in sk.derived] == ["Hip"]  # Pose2Sim's BLAZEPOSE tree has no Neck


# ============================================================== against the marker sets
@pytest.mark.parametrize("name", NAMES)
def test_markers_match_marker_set_xml(name):
    sk = SKELETONS[name]
    path = assets.marker_set_path(name)
    assert path.name == sk.marker_set
    xml = load_markers(path)
    mapped = set(sk.marker_map.values())
    assert mapped <= set(xml), mapped - set(xml)
    unmapped = {m for m, _ in sk.unmapped_markers}
    assert set(xml) <= mapped | unmapped, set(xml) - mapped - unmapped
    assert all(reason for _, reason in sk.unmapped_markers)
    for point in sk.marker_map:
        sk.index(point)  # every mapped point exists


@pytest.mark.parametrize("name", NAMES)
def test_ik_and_scaling_setups_use_only_known_markers(name):
    markers = set(load_markers(assets.marker_set_path(name)))
    for path in (assets.ik_setup_path(name), assets.scaling_setup_path(name)):
        root = ET.parse(path).getroot()
        tasks = {t.get("name") for t in root.iter("IKMarkerTask")}
        # marker pairs of the scaling measurements (the BlazePose scaling setup has no tasks)
        tasks |= {m for pair in root.iter("MarkerPair") for m in pair.findtext("markers", "").split()}
        assert tasks and tasks <= markers, (path.name, tasks - markers)


@pytest.mark.parametrize("name", NAMES)
def test_marker_sets_are_mirror_symmetric_except_known_issues(name):
    sk = SKELETONS[name]
    xml = load_markers(assets.marker_set_path(name))
    known = set(KNOWN_MARKER_SET_ISSUES.get(sk.marker_set, {}))
    asymmetric, pairs = set(), set()
    for left, right in sk.lr_pairs:
        ml, mr = sk.marker_map.get(sk.keypoints[left]), sk.marker_map.get(sk.keypoints[right])
        if ml is None or mr is None:
            assert ml is None and mr is None, (ml, mr)  # markers come in pairs
            continue
        pairs.add((ml, mr))
        (fl, pl), (fr, pr) = xml[ml], xml[mr]
        if fr != mirror_frame(fl) or not np.allclose(pr, pl * [1, 1, -1], atol=1e-4):
            asymmetric.add((ml, mr))
    # exactly the pairs holding a documented defect are asymmetric
    assert asymmetric == {pair for pair in pairs if known & set(pair)}, asymmetric
    assert known <= {m for pair in pairs for m in pair}


@pytest.mark.parametrize("name", NAMES)
def test_derived_point_markers_sit_at_source_midpoint(name):
    sk = SKELETONS[name]
    xml = load_markers(assets.marker_set_path(name))
    checked = 0
    for d in sk.derived:
        marker = sk.marker_map.get(d.name)
        if marker is None:
            continue
        sources = [xml[sk.marker_map[sk.keypoints[s]]] for s in d.sources]
        frames = {f for f, _ in sources}
        assert frames == {xml[marker][0]}
        np.testing.assert_allclose(xml[marker][1], np.mean([p for _, p in sources], 0), atol=2e-3)
        checked += 1
    assert checked == (1 if name == "COCO_17" else 0)  # COCO_17 Neck = mid-shoulder


def test_coco17_rhip_marker_defect_is_documented():
    xml = load_markers(assets.marker_set_path("COCO_17"))
    frame, rhip = xml["RHip"]
    assert frame == "/bodyset/pelvis"
    assert rhip[1] < -0.3  # ~0.32 m below the other hip marker
    assert "RHip" in KNOWN_MARKER_SET_ISSUES["Markers_Coco17.xml"]


# ============================================================== left/right
@pytest.mark.parametrize("name", NAMES)
def test_lr_pairs_are_left_then_right(name):
    sk = SKELETONS[name]
    for left, right in sk.lr_pairs:
        ln, rn = sk.keypoints[left], sk.keypoints[right]
        if is_face(sk, left):
            continue  # checked against the flip map below
        assert ln.startswith("L") and rn.startswith("R") and ln[1:] == rn[1:], (ln, rn)
    # every L<x>/R<x> keypoint pair outside the face is listed
    names = set(sk.keypoints)
    paired = {sk.keypoints[i] for pair in sk.lr_pairs for i in pair}
    for k, n in enumerate(sk.keypoints):
        if not is_face(sk, k) and n[0] in "LR" and ("RL"[n[0] == "R"] + n[1:]) in names:
            assert n in paired, n


def test_coco133_face_pairs_follow_wholebody_flip_map():
    sk = COCO_133
    face_pairs = [(a - 23, b - 23) for a, b in sk.lr_pairs if is_face(sk, a)]
    assert all(is_face(sk, b + 23) for _, b in face_pairs)
    flip = {i: i for i in range(68)}
    for a, b in face_pairs:
        flip[a], flip[b] = b, a
    assert flip == FACE_FLIP
    assert {a for a, _ in face_pairs} == FACE_LEFT


@pytest.mark.parametrize("name", NAMES)
def test_swap_lr_twice_is_identity_and_moves_points(name):
    sk = SKELETONS[name]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, sk.n_keypoints, 3)).astype(np.float32)  # (P, K, 3)
    y = sk.swap_lr(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    np.testing.assert_array_equal(sk.swap_lr(y), x)
    for left, right in sk.lr_pairs:
        np.testing.assert_array_equal(y[:, left], x[:, right])
        np.testing.assert_array_equal(y[:, right], x[:, left])
    unpaired = sorted(set(range(sk.n_keypoints)) - {i for p in sk.lr_pairs for i in p})
    np.testing.assert_array_equal(y[:, unpaired], x[:, unpaired])
    # other axes and extended (K + D) arrays
    z = rng.normal(size=(sk.n_points, 5))
    np.testing.assert_array_equal(sk.swap_lr(sk.swap_lr(z, axis=0), axis=0), z)
    np.testing.assert_array_equal(sk.swap_lr(z, axis=0)[sk.n_keypoints:], z[sk.n_keypoints:])
    with pytest.raises(ValueError):
        sk.swap_lr(np.zeros((sk.n_keypoints + 7, 3)), axis=0)


def test_swap_lr_commutes_with_with_derived():
    sk = get_skeleton("COCO_17")
    x = np.random.default_rng(1).normal(size=(3, sk.n_keypoints, 3))
    np.testing.assert_allclose(sk.with_derived(sk.swap_lr(x)), sk.swap_lr(sk.with_derived(x)))


# ============================================================== helpers
def test_with_derived_values_shape_and_nan():
    sk = get_skeleton("COCO_17")
    x = np.arange(2 * 17 * 3, dtype=float).reshape(2, 17, 3)  # (N, K, 3)
    x[1, sk.index("LHip")] = np.nan
    y = sk.with_derived(x)
    assert y.shape == (2, 19, 3)
    np.testing.assert_array_equal(y[:, :17], x)
    np.testing.assert_allclose(
        y[0, sk.index("Neck")], (x[0, sk.index("LShoulder")] + x[0, sk.index("RShoulder")]) / 2
    )
    assert np.isnan(y[1, sk.index("Hip")]).all() and not np.isnan(y[1, sk.index("Neck")]).any()
    # keypoint axis elsewhere, integer input
    yt = sk.with_derived(np.ones((3, 17), dtype=np.int32), axis=1)
    assert yt.shape == (3, 19) and yt.dtype.kind == "f"
    with pytest.raises(ValueError):
        sk.with_derived(np.zeros((19, 3)))
    h = get_skeleton("HALPE_26")
    np.testing.assert_array_equal(h.with_derived(np.ones((26, 3))), np.ones((26, 3)))


@pytest.mark.parametrize("name", NAMES)
def test_bones(name):
    sk = SKELETONS[name]
    bones = sk.bones()
    assert all(0 <= p < sk.n_keypoints and 0 <= c < sk.n_keypoints for p, c in bones)
    assert len(bones) == sum(p != -1 for p in sk.parents)
    full = sk.bones(derived=True)
    assert len(full) == sk.n_points - len(sk.roots)
    assert set(bones) <= set(full)
    assert all(sk.point_parents[c] == p for p, c in full)


def test_index_indices_and_lookup():
    sk = get_skeleton("halpe_26")
    assert sk is SKELETONS[DEFAULT_SKELETON]
    assert get_skeleton("Halpe26") is sk and get_skeleton("coco-133") is COCO_133
    assert sk.index("RKnee") == 14 and sk.keypoints[sk.index("Neck")] == "Neck"
    idx = sk.indices(["LHip", "RHip"])
    assert idx.dtype == np.intp and idx.tolist() == [11, 12]
    assert get_skeleton("COCO_17").index("Neck") == 18  # derived: K + 1
    with pytest.raises(KeyError, match="Spine"):
        sk.index("Spine")
    with pytest.raises(KeyError, match="HALPE_26, COCO_17, COCO_133"):
        get_skeleton("BODY_25")


def test_skeleton_is_frozen_hashable_and_validated():
    sk = get_skeleton("COCO_17")
    assert hash(sk) == hash(SKELETONS["COCO_17"])
    with pytest.raises(AttributeError):
        sk.name = "x"  # type: ignore[misc]
    with pytest.raises(ValueError, match="cycle"):
        Skeleton("bad", ("A", "B"), (1, 0), (), "x.xml", ())
    with pytest.raises(ValueError):
        Skeleton("bad", ("LA", "RA"), (-1, 0), ((0, 0),), "x.xml", ())
    with pytest.raises(ValueError):
        Skeleton("bad", ("A",), (-1, 0), (), "x.xml", (), (DerivedPoint("M", (3,), 0),))


# ============================================================== assets
def test_asset_paths_exist():
    root = assets.pose2sim_root()
    assert (root / "skeletons.py").is_file()
    assert assets.model_path().name == "Model_Pose2Sim_simple.osim"
    assert assets.model_path("Model_Pose2Sim_muscles_flex.osim").is_file()
    assert assets.ik_setup_path("HALPE_26").name == "IK_Setup_Pose2Sim_Halpe26.xml"
    assert assets.scaling_setup_path("coco_133").name == "Scaling_Setup_Pose2Sim_Coco133.xml"
    assert assets.marker_set_path("COCO_133_WRIST").name == "Markers_Coco133.xml"
    assert assets.ik_setup_path("LSTM").name == "IK_Setup_Pose2Sim_withHands_LSTM.xml"
    videos = assets.demo_videos()
    assert list(videos) == ["cam01", "cam02", "cam03", "cam04"]
    assert all(p.is_file() and p.suffix == ".mp4" for p in videos.values())
    assert assets.demo_qca_path().is_file() and assets.demo_dir().is_dir()
    assert (assets.marker_augmenter_dir() / "LSTM").is_dir()
    for sk in SKELETONS.values():
        assert assets.marker_set_path(sk.name).name == sk.marker_set


def test_missing_asset_error():
    with pytest.raises(assets.AssetNotFoundError, match="pip install pose2sim") as e:
        assets.marker_set_path("NO_SUCH_MODEL")
    assert isinstance(e.value, FileNotFoundError)
    with pytest.raises(FileNotFoundError, match="nothing.osim"):
        assets.model_path("nothing.osim")


def test_pose2sim_not_imported_at_runtime():
    code = (
        "import sys, rtkin.core.skeletons, rtkin.core.assets as a;"
        "a.demo_videos(); a.marker_set_path('COCO_17');"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('Pose2Sim', 'anytree')];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)

"""Pose2Sim's marker-augmenter LSTMs, read out of their ONNX graphs and run step by step.

The models (``Pose2Sim/MarkerAugmenter/LSTM/v0.3_lower`` and ``v0.3_upper``, ``model.onnx``) are
Keras ``Sequential`` networks exported by tf2onnx: four stacked ``LSTM`` layers (128 units,
``return_sequences``), then a ``TimeDistributed(Dense)`` without activation. tf2onnx writes each
LSTM layer as an ONNX ``Loop`` over time whose body computes one Keras LSTM cell::

    z = x_t @ W + h @ U + b                       W (F, 4H), U (H, 4H), b (4H,)
    i, f, g, o = split(z, 4)                      Keras gate order
    c = sigmoid(f) * c + sigmoid(i) * tanh(g)
    h = sigmoid(o) * tanh(c)                      the layer's output at t

starting from ``h = c = 0``. The cell weights are loop-carried inputs of the ``Loop`` (body inputs
bound to the graph's initializers); :func:`load_lstm` reads them by following each body input to
the ``Loop`` node's input and its initializer, and checks the body computes exactly the cell above
(operators, gate order, which gate multiplies the previous cell state), so nothing is guessed. The
network is causal: the output at t depends on inputs ``0..t`` only, so :class:`LSTMNet` run one
step at a time with explicit state ``(h, c)`` per layer equals the ONNX model run over the whole
sequence (checked against onnxruntime in ``tests/test_augment.py``).

Arithmetic is float32, as onnxruntime runs the graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["LSTMLayer", "LSTMWeights", "LSTMState", "LSTMNet", "load_lstm"]


@dataclass(frozen=True)
class LSTMLayer:
    """One Keras LSTM layer: ``kernel`` (F, 4H), ``recurrent`` (H, 4H), ``bias`` (4H,), float32;
    gates in Keras order i, f, g (candidate), o."""

    kernel: np.ndarray
    recurrent: np.ndarray
    bias: np.ndarray

    @property
    def units(self) -> int:
        """H, the number of units."""
        return int(self.recurrent.shape[0])


@dataclass(frozen=True)
class LSTMWeights:
    """A stack of LSTM layers and the dense output layer ``y = h @ dense + dense_bias``
    (``dense`` (H, O), ``dense_bias`` (O,))."""

    layers: tuple[LSTMLayer, ...]
    dense: np.ndarray
    dense_bias: np.ndarray

    @property
    def n_inputs(self) -> int:
        """F, input features per time step."""
        return int(self.layers[0].kernel.shape[0])

    @property
    def n_outputs(self) -> int:
        """O, output values per time step."""
        return int(self.dense.shape[1])


class LSTMState:
    """Per-sequence state of an :class:`LSTMNet`: ``h`` and ``c`` per layer, ``(L, H)`` float32,
    zeros at the start (as the ONNX graphs start); ``r`` ``(L, 4H)`` the recurrent part of the
    next step's pre-activations, ``h @ U + b``, valid while ``prepared``."""

    __slots__ = ("h", "c", "r", "prepared")

    def __init__(self, n_layers: int, units: int):
        self.h = np.zeros((n_layers, units), dtype=np.float32)
        self.c = np.zeros((n_layers, units), dtype=np.float32)
        self.r = np.zeros((n_layers, 4 * units), dtype=np.float32)
        self.prepared = False

    def reset(self) -> None:
        self.h[:] = 0.0
        self.c[:] = 0.0
        self.prepared = False

    def copy(self) -> "LSTMState":
        out = LSTMState(*self.h.shape)
        out.h[:] = self.h
        out.c[:] = self.c
        out.r[:] = self.r
        out.prepared = self.prepared
        return out


class LSTMNet:
    """The augmenter network, run one time step at a time.

    Args:
        weights: from :func:`load_lstm`.

    A step is, per layer, ``x @ W`` plus the recurrent part ``h @ U + b``, which depends on the
    previous step only: :meth:`prepare` computes it ahead (a live loop calls it in the gap after
    a frame, so the next frame waits for half the weights), else :meth:`step` does, the same
    arithmetic either way. The gates are reordered to i, f, o, g and the sigmoid gates' columns
    halved (exact in binary), so one ``tanh`` serves all four: ``sigmoid(x) = (tanh(x / 2) + 1) / 2``.
    """

    def __init__(self, weights: LSTMWeights):
        self.weights = weights
        units = {layer.units for layer in weights.layers}
        if len(units) != 1:
            raise ValueError(f"LSTM layers of different sizes {sorted(units)} are not supported")
        H = self.units = units.pop()
        self.n_inputs = weights.n_inputs
        self.n_outputs = weights.n_outputs
        order = np.r_[0:2 * H, 3 * H:4 * H, 2 * H:3 * H]  # i, f, o, g
        half = np.r_[np.full(3 * H, 0.5), np.ones(H)].astype(np.float32)
        self._w = [np.ascontiguousarray(la.kernel[:, order] * half, dtype=np.float32) for la in weights.layers]
        self._u = [np.ascontiguousarray(la.recurrent[:, order] * half, dtype=np.float32) for la in weights.layers]
        self._b = [np.ascontiguousarray(la.bias[order] * half, dtype=np.float32) for la in weights.layers]
        self._dense = np.ascontiguousarray(weights.dense, dtype=np.float32)
        self._dense_b = np.ascontiguousarray(weights.dense_bias, dtype=np.float32)
        self._z = np.zeros(4 * H, dtype=np.float32)
        self._tmp = np.zeros(H, dtype=np.float32)

    def new_state(self) -> LSTMState:
        """A zero state (the start of a sequence)."""
        return LSTMState(len(self._w), self.units)

    def prepare(self, state: LSTMState) -> None:
        """The recurrent part of ``state``'s next step, ``h @ U + b`` per layer (idempotent)."""
        if not state.prepared:
            for k, (u, b) in enumerate(zip(self._u, self._b)):
                np.matmul(state.h[k], u, out=state.r[k])
                state.r[k] += b
            state.prepared = True

    def step(self, x: np.ndarray, state: LSTMState) -> np.ndarray:
        """One time step: ``x`` (F,) normalised input -> ``(O,)`` float32 output (a new array);
        updates ``state``."""
        H = self.units
        z, tmp = self._z, self._tmp
        sig, i, f, o, g = z[:3 * H], z[:H], z[H:2 * H], z[2 * H:3 * H], z[3 * H:]
        self.prepare(state)
        state.prepared = False
        inp = np.asarray(x, dtype=np.float32)
        for k, w in enumerate(self._w):
            np.matmul(inp, w, out=z)
            z += state.r[k]
            np.tanh(z, out=z)
            sig *= 0.5
            sig += 0.5
            c = state.c[k]
            c *= f
            np.multiply(i, g, out=tmp)
            c += tmp
            h = state.h[k]
            np.tanh(c, out=h)
            h *= o
            inp = h  # the next layer's input
        out = state.h[-1] @ self._dense
        out += self._dense_b
        return out

    def run(self, X: np.ndarray, state: LSTMState | None = None) -> np.ndarray:
        """Steps over a sequence: ``X`` (T, F) -> ``(T, O)`` float32 (from a zero state unless
        ``state`` is given, which is then updated)."""
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_inputs:
            raise ValueError(f"X must be (T, {self.n_inputs}), got {X.shape}")
        st = self.new_state() if state is None else state
        out = np.empty((X.shape[0], self.n_outputs), dtype=np.float32)
        for t in range(X.shape[0]):
            out[t] = self.step(X[t], st)
        return out


# ============================================================================ ONNX read-out


def _producers(graph) -> dict:
    return {o: n for n in graph.node for o in n.output}


def _consumers(graph, name: str) -> list:
    return [n for n in graph.node if name in n.input]


def _cell_from_loop(loop, initializers: dict[str, np.ndarray]) -> LSTMLayer:
    """The Keras LSTM cell computed by the body of a tf2onnx ``Loop`` (checked, not assumed)."""
    body = next(a.g for a in loop.attribute if a.name == "body")
    # body input i <-> Loop node input i (0: trip count, 1: condition, then loop-carried values)
    outer = {bi.name: loop.input[i] for i, bi in enumerate(body.input) if i < len(loop.input)}

    def weight(name: str) -> np.ndarray:
        src = outer.get(name)
        if src is None or src not in initializers:
            raise ValueError(f"LSTM loop {loop.name}: {name!r} is not bound to a graph initializer")
        return initializers[src]

    nodes = list(body.node)
    prod = _producers(body)
    gathers = [n for n in nodes if n.op_type == "Gather"]
    if len(gathers) != 1:
        raise ValueError(f"LSTM loop {loop.name}: expected one Gather (x_t), found {len(gathers)}")
    x_t = gathers[0].output[0]
    matmuls = [n for n in nodes if n.op_type == "MatMul"]
    mm_x = [n for n in matmuls if n.input[0] == x_t]
    mm_h = [n for n in matmuls if n.input[0] != x_t]
    if len(mm_x) != 1 or len(mm_h) != 1:
        raise ValueError(f"LSTM loop {loop.name}: expected x_t @ W and h @ U")
    kernel, recurrent = weight(mm_x[0].input[1]), weight(mm_h[0].input[1])
    h_prev = mm_h[0].input[0]
    splits = [n for n in nodes if n.op_type == "Split"]
    if len(splits) != 1 or len(splits[0].output) != 4:
        raise ValueError(f"LSTM loop {loop.name}: expected one Split into 4 gates")
    split = splits[0]
    axis = next((a.i for a in split.attribute if a.name == "axis"), 0)
    if axis not in (1, -1):
        raise ValueError(f"LSTM loop {loop.name}: gates split along axis {axis}, expected the last")
    # z = (x_t @ W + h @ U) + b: the Split's input is an Add of the MatMul sum and the bias
    add_b = prod[split.input[0]]
    if add_b.op_type != "Add":
        raise ValueError(f"LSTM loop {loop.name}: Split input is {add_b.op_type}, expected Add")
    add_xh = prod.get(add_b.input[0])
    bias_name = add_b.input[1]
    if add_xh is None or add_xh.op_type != "Add":
        add_xh, bias_name = prod.get(add_b.input[1]), add_b.input[0]
    if add_xh is None or {add_xh.input[0], add_xh.input[1]} != {mm_x[0].output[0], mm_h[0].output[0]}:
        raise ValueError(f"LSTM loop {loop.name}: gate pre-activation is not x_t @ W + h @ U + b")
    bias = weight(bias_name)
    # gate activations, Keras order: i, f sigmoid; g tanh; o sigmoid
    act = {}
    for k, out in enumerate(split.output):
        users = _consumers(body, out)
        if len(users) != 1:
            raise ValueError(f"LSTM loop {loop.name}: gate {k} has {len(users)} consumers")
        act[k] = users[0]
    if [act[k].op_type for k in range(4)] != ["Sigmoid", "Sigmoid", "Tanh", "Sigmoid"]:
        raise ValueError(f"LSTM loop {loop.name}: gate activations {[act[k].op_type for k in range(4)]}, "
                         "expected Keras i, f, g, o = Sigmoid, Sigmoid, Tanh, Sigmoid")
    # the forget gate (1) multiplies the previous cell state; the input gate (0) the candidate (2)
    c_prev = [n.input[1] if n.input[0] == act[1].output[0] else n.input[0]
              for n in _consumers(body, act[1].output[0]) if n.op_type == "Mul"]
    ig = [n for n in _consumers(body, act[0].output[0]) if n.op_type == "Mul"]
    if len(c_prev) != 1 or c_prev[0] not in outer or not ig or act[2].output[0] not in ig[0].input:
        raise ValueError(f"LSTM loop {loop.name}: gate wiring is not c = f * c + i * g")
    if h_prev not in outer:
        raise ValueError(f"LSTM loop {loop.name}: h @ U does not read the loop-carried h")
    H = recurrent.shape[0]
    if kernel.shape[1] != 4 * H or recurrent.shape != (H, 4 * H) or bias.shape != (4 * H,):
        raise ValueError(f"LSTM loop {loop.name}: inconsistent shapes W {kernel.shape}, U {recurrent.shape}, "
                         f"b {bias.shape}")
    return LSTMLayer(kernel.astype(np.float32), recurrent.astype(np.float32), bias.astype(np.float32))


def _dense_layer(graph, initializers: dict[str, np.ndarray], units: int) -> tuple[np.ndarray, np.ndarray]:
    """The TimeDistributed Dense layer: the top-level ``MatMul`` by an (H, O) initializer and the
    ``Add`` of an (O,) initializer on its result."""
    mms = [n for n in graph.node if n.op_type == "MatMul" and n.input[1] in initializers
           and initializers[n.input[1]].ndim == 2 and initializers[n.input[1]].shape[0] == units]
    if len(mms) != 1:
        raise ValueError(f"expected one dense MatMul after the LSTM layers, found {len(mms)}")
    W = initializers[mms[0].input[1]]
    out = mms[0].output[0]
    # the product may be reshaped before the bias is added (pfor vectorisation)
    for _ in range(4):
        users = _consumers(graph, out)
        if len(users) != 1:
            break
        u = users[0]
        if u.op_type == "Add":
            b = next((initializers[i] for i in u.input if i in initializers), None)
            if b is None or b.shape != (W.shape[1],):
                break
            return W.astype(np.float32), b.astype(np.float32)
        if u.op_type != "Reshape":
            break
        out = u.output[0]
    raise ValueError("dense layer bias not found after its MatMul")


def load_lstm(onnx_path: str | Path) -> LSTMWeights:
    """Read the LSTM stack and dense layer of a Pose2Sim augmenter ``model.onnx``.

    Raises:
        ValueError: the graph is not the expected tf2onnx export of stacked Keras LSTMs + Dense.
        ImportError: the ``onnx`` package is missing.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path))
    g = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    loops = [n for n in g.node if n.op_type == "Loop"
             and any(m.op_type == "Split" for a in n.attribute if a.name == "body" for m in a.g.node)]
    if not loops:
        raise ValueError(f"{onnx_path}: no LSTM loop found")
    layers = tuple(_cell_from_loop(n, inits) for n in loops)  # graph order = layer order
    for a, b in zip(layers, layers[1:]):
        if b.kernel.shape[0] != a.units:
            raise ValueError(f"{onnx_path}: LSTM layers do not chain ({a.units} units -> {b.kernel.shape[0]} inputs)")
    n_in = [d.dim_value for d in g.input[0].type.tensor_type.shape.dim][-1]
    if n_in and n_in != layers[0].kernel.shape[0]:
        raise ValueError(f"{onnx_path}: input has {n_in} features, first kernel {layers[0].kernel.shape}")
    dense, dense_b = _dense_layer(g, inits, layers[-1].units)
    return LSTMWeights(layers, dense, dense_b)

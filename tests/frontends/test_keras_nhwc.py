"""Keras models with NHWC inputs through the whole chain (issue 13 finding 6).

Functional, Sequential and subclassed ``tf.keras.Model`` with Conv, Dense, PReLU, MaxPool and Softmax:
``espq.load`` accepts each, ``qm.run`` and ``run_espdl`` take and return the model's own NHWC layout,
the export with test values passes ``check_test_values`` and fake-quant == integer runner at int8
(exactly on int8 outputs, within float32 rounding on Softmax's float outputs). Keras's PReLU reaches
espq as tf2onnx's Relu/Neg/Relu/Mul/Add and is fused back into one PRelu (``fuse_prelu``).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import espq
from espq.errors import InputDataError, ShapeError
from espq.frontends.tf import is_tf_model
from espq.sim.integer import IntegerRunner, check_test_values
from espq.sim.integer.layout_replay import np_dtype

tf = pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")
L = tf.keras.layers
SHAPE = (1, 12, 16, 3)  # NHWC, H != W != C so a layout mix-up changes the shape


def _functional():
    inp = tf.keras.Input(SHAPE[1:], name="image")
    x = L.Conv2D(8, 3, name="c1")(inp)
    x = L.PReLU(shared_axes=[1, 2], name="p1")(x)
    x = L.MaxPooling2D(2, 2, padding="same", name="pool")(x)
    x = L.Conv2D(6, 1, name="c2")(x)
    prob = L.Conv2D(2, 1, activation="softmax", name="prob")(x)  # Softmax over the NHWC channel axis
    box = L.Dense(4, name="box")(x)  # Dense on a 4-D tensor: MatMul over the last (channel) axis
    return tf.keras.Model(inp, [prob, box])


def _sequential():
    return tf.keras.Sequential(
        [
            tf.keras.Input(SHAPE[1:]),
            L.Conv2D(6, 3),
            L.PReLU(shared_axes=[1, 2]),
            L.MaxPooling2D(2),
            L.Flatten(),
            L.Dense(16),
            L.PReLU(),
            L.Dense(3),
            L.Softmax(),
        ]
    )


class TinyPNet(tf.keras.Model):
    """A subclassed model in MTCNN's style (mtcnn 1.0.0's PNet): layers in __init__, graph in call."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv1 = L.Conv2D(8, 3, name="conv1")
        self.prelu1 = L.PReLU(shared_axes=[1, 2], name="prelu1")
        self.pool = L.MaxPooling2D(2, 2, padding="same", name="pool1")
        self.conv2 = L.Conv2D(4, 1, name="conv2")
        self.cls = L.Conv2D(2, 1, activation="softmax", name="cls")

    def call(self, inputs):
        x = self.pool(self.prelu1(self.conv1(inputs)))
        return [self.conv2(x), self.cls(x)]


def _subclassed():
    model = TinyPNet()
    model(np.zeros(SHAPE, np.float32))  # builds the layers (TinyPNet has no build() of its own)
    return model


def _randomize(model, seed):
    """Non-trivial weights (PReLU slopes too) so a wrong branch or layout changes the numbers."""
    rng = np.random.default_rng(seed)
    model.set_weights([rng.uniform(-0.6, 0.6, w.shape).astype(np.float32) for w in model.get_weights()])
    return model


BUILDERS = {"functional": _functional, "sequential": _sequential, "subclassed": _subclassed}


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def keras_model(request):
    tf.keras.utils.set_random_seed(0)
    model = _randomize(BUILDERS[request.param](), seed=len(request.param))
    return request.param, model, espq.load(model)


def _data(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.uniform(-1, 1, SHAPE).astype(np.float32) for _ in range(n)]


def _keras_outputs(model, x: np.ndarray) -> list[np.ndarray]:
    out = model(x)
    return [np.asarray(o) for o in (out if isinstance(out, (list, tuple)) else [out])]


def test_subclassed_model_is_recognised_without_tensorflow_types():
    assert is_tf_model(_subclassed())
    assert not is_tf_model(object())


def test_unbuilt_subclassed_model_asks_for_input_shape():
    with pytest.raises(ShapeError, match=r"pass input_shape \(NHWC"):
        espq.load(TinyPNet())


def test_subclassed_model_with_input_shape_only():
    """Built by its first call at the given shape: espq.load(model, input_shape=NHWC)."""
    tf.keras.utils.set_random_seed(1)
    model = TinyPNet()
    x = _data(1, seed=3)[0]
    ref = _keras_outputs(model, x)  # the call builds it
    g = espq.load(model, input_shape=[1, 12, 16, 3])
    assert g.shape(g.inputs[0]) == SHAPE
    got = espq.run_float(g, x)
    for name, r in zip(g.outputs, ref):
        np.testing.assert_allclose(got[name], r, rtol=1e-4, atol=1e-5)


def test_float_graph_keeps_nhwc_and_matches_keras(keras_model):
    kind, model, g = keras_model
    assert g.shape(g.inputs[0]) == SHAPE
    assert "PRelu" in [n.op_type for n in g.nodes] and "Neg" not in [n.op_type for n in g.nodes]
    x = _data(1, seed=5)[0]
    got = espq.run_float(g, x)
    ref = _keras_outputs(model, x)
    assert len(g.outputs) == len(ref)
    for name, r in zip(g.outputs, ref):
        assert got[name].shape == r.shape, kind
        np.testing.assert_allclose(got[name], r, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("target", ["esp32p4", "esp32s3", "c"])
def test_nhwc_chain_int8_exact(keras_model, target, tmp_path):
    """quantize -> export with test values -> run --check; qm.run == run_espdl exactly, both NHWC."""
    kind, model, g = keras_model
    calib = _data(4)  # batch-1 samples: tf2onnx bakes batch 1 into the Dense-on-4-D head's Reshape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the quality gate's findings on random weights
        qm = espq.quantize(g, calib, target=target, bits=8, calib_steps=4, progress=False)
    x = _data(1, seed=7)[0]
    path = tmp_path / f"{kind}.espdl"
    qm.export(path, export_test_values=True, test_inputs=x)
    report = check_test_values(path)
    assert [t.name for t in report.tensors] == list(g.outputs)
    assert all(t.ok and t.mismatches == 0 for t in report.tensors), report
    fq = qm.run(x)
    chip = espq.run_espdl(path, x)  # NHWC in, the model's own layout out
    ref = _keras_outputs(model, x)
    runner = IntegerRunner(path)
    for name, r in zip(g.outputs, ref):
        assert fq[name].shape == chip[name].shape == r.shape
        if np.issubdtype(np_dtype(runner.values[name].elem_type), np.integer):
            np.testing.assert_array_equal(fq[name], chip[name])
        else:  # a float output (Softmax): float32 arithmetic, check_test_values' float tolerance
            np.testing.assert_allclose(fq[name], chip[name], rtol=0, atol=2e-5)
        # the quantized model still computes the Keras model (not a transposed copy of it)
        assert np.abs(chip[name] - r).max() <= 0.1 * max(np.abs(r).max(), 1e-3) + 0.02
    with pytest.raises(InputDataError, match=r"expects shape \[1, 12, 16, 3\]"):
        espq.run_espdl(path, x.transpose(0, 3, 1, 2))  # NCHW is refused for an NHWC model

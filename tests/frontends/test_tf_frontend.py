"""TensorFlow/Keras frontend (extra [tf])."""

from __future__ import annotations

import sys

import numpy as np
import onnxruntime as ort
import pytest

from espq.errors import MissingDependencyError
from espq.frontends import tf as tf_frontend


def test_missing_extra_is_reported(monkeypatch):
    monkeypatch.setitem(sys.modules, "tf2onnx", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'espq\[tf\]'"):
        tf_frontend.load_tf(object())


@pytest.fixture(scope="module")
def keras_cnn():
    tf = pytest.importorskip("tensorflow")
    pytest.importorskip("tf2onnx")
    tf.random.set_seed(0)
    inp = tf.keras.Input((12, 12, 3), name="image")
    x = tf.keras.layers.Conv2D(8, 3, activation="relu", padding="same")(inp)
    x = tf.keras.layers.BatchNormalization()(x)
    x = tf.keras.layers.MaxPooling2D()(x)
    x = tf.keras.layers.DepthwiseConv2D(3, activation="relu")(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    out = tf.keras.layers.Dense(5)(x)
    model = tf.keras.Model(inp, out)
    # non-trivial batch-norm statistics
    bn = model.layers[2]
    rng = np.random.default_rng(1)
    bn.set_weights(
        [rng.uniform(0.5, 1.5, 8), rng.normal(0, 0.1, 8), rng.normal(0, 0.2, 8), rng.uniform(0.5, 2, 8)]
    )
    return model


def test_keras_cnn_converts_numerically_equal(keras_cnn):
    from espq.frontends import to_onnx

    proto = to_onnx(keras_cnn)
    x = np.random.default_rng(0).standard_normal((1, 12, 12, 3)).astype(np.float32)
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    (got,) = sess.run(None, {proto.graph.input[0].name: x})
    ref = keras_cnn(x).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)


def test_keras_file_and_savedmodel(keras_cnn, tmp_path):
    from espq.frontends import to_onnx

    path = tmp_path / "m.keras"
    keras_cnn.save(path)
    before = path.read_bytes()
    proto = to_onnx(path)
    assert path.read_bytes() == before
    x = np.random.default_rng(2).standard_normal((1, 12, 12, 3)).astype(np.float32)
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    (got,) = sess.run(None, {proto.graph.input[0].name: x})
    np.testing.assert_allclose(got, keras_cnn(x).numpy(), rtol=1e-4, atol=1e-5)
    saved = tmp_path / "saved"
    keras_cnn.export(str(saved))
    proto2 = to_onnx(saved)
    sess2 = ort.InferenceSession(proto2.SerializeToString(), providers=["CPUExecutionProvider"])
    (got2,) = sess2.run(None, {proto2.graph.input[0].name: x})
    np.testing.assert_allclose(got2, keras_cnn(x).numpy(), rtol=1e-4, atol=1e-5)

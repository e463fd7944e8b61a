"""Issue 13 finding 8 end to end: Max/Min with a constant and ceil-mode MaxPool quantize, export and
pass ``run --check``; fake-quant == integer runner codes. openWakeWord's embedding model when cached."""

from __future__ import annotations

import os
import warnings
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

import espq
from espq.cli import app
from espq.sim.integer import check_test_values

CASES = [("esp32p4", 8), ("esp32s3", 8), ("c", 8), ("esp32p4", 16), ("c", 16)]


def _model() -> onnx.ModelProto:
    """Conv -> LeakyRelu -> Max(., -0.4) -> MaxPool 3x3/2 ceil -> Min(Max(., -0.2), 0.6): 10x9 -> 5x4."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.uniform(-0.5, 0.5, (6, 3, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.uniform(-0.1, 0.1, 6).astype(np.float32), "b"),
        numpy_helper.from_array(np.full((1, 1, 1, 1), -0.4, np.float32), "floor"),
        numpy_helper.from_array(np.array(-0.2, np.float32), "lo"),
        numpy_helper.from_array(np.array([0.6], np.float32), "hi"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("LeakyRelu", ["c"], ["l"], name="leaky", alpha=0.2),
        helper.make_node("Max", ["l", "floor"], ["m"], name="max"),
        helper.make_node(
            "MaxPool", ["m"], ["p"], name="pool", kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1
        ),
        helper.make_node("Max", ["p", "lo"], ["q"], name="max2"),
        helper.make_node("Min", ["hi", "q"], ["y"], name="min"),
    ]
    g = helper.make_graph(
        nodes,
        "minmax_pool",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 10, 9])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6, 5, 4])],
        initializer=inits,
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    return m


def _quantize(model, calib, target: str, bits: int):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return espq.quantize(model, calib, target=target, bits=bits, progress=False)


def _chain(qm, path: Path, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Export with test values, ``espq run --check`` on the file; (fake-quant, runner) codes of output 0."""
    qm.export(path, export_test_values=True, export_config=False)
    r = CliRunner().invoke(app, ["run", str(path), "--check"])
    assert r.exit_code == 0 and "PASS" in r.output, r.output
    assert check_test_values(path).ok
    out = qm.graph.outputs[0]
    e = qm.plan.tensors[out].exponent
    ours = qm.run(x)[out]
    chip = espq.run_espdl(path, x)[out]
    assert ours.shape == chip.shape
    return np.rint(ours / 2.0**e), np.rint(chip / 2.0**e)


@pytest.mark.parametrize(("target", "bits"), CASES)
def test_minmax_and_ceil_pool_chain(tmp_path, target, bits):
    rng = np.random.default_rng(1)
    calib = [rng.standard_normal((1, 3, 10, 9)).astype(np.float32) for _ in range(4)]
    qm = _quantize(_model(), calib, target, bits)
    ops = [n.op_type for n in qm.graph.nodes]
    assert "Max" not in ops and "Min" not in ops and ops.count("Clip") == 2
    pool = next(n for n in qm.graph.nodes if n.op_type == "MaxPool")
    assert pool.attrs.get("ceil_mode", 0) == 0 and list(pool.attrs["pads"]) == [0, 0, 1, 0]
    x = rng.standard_normal((1, 3, 10, 9)).astype(np.float32)
    fq, chip = _chain(qm, tmp_path / "m.espdl", x)
    assert fq.shape == (1, 6, 5, 4)
    np.testing.assert_array_equal(fq, chip) if bits == 8 else np.testing.assert_allclose(fq, chip, atol=1)
    # the bounds hold on the chip: codes within [-0.2, 0.6] at the output exponent
    e = qm.plan.tensors[qm.graph.outputs[0]].exponent
    assert chip.min() * 2.0**e >= -0.2 - 2.0**e and chip.max() * 2.0**e <= 0.6 + 2.0**e


def _cache() -> Path:
    return Path(os.environ.get("ESPQ_REALMODEL_CACHE", "~/.cache/espq-realmodels")).expanduser()


@pytest.mark.slow
@pytest.mark.parametrize(("target", "bits"), [("esp32p4", 8), ("esp32s3", 8)])
def test_openwakeword_embedding_model(tmp_path, target, bits):
    """embedding_model.onnx (openwakeword==0.5.1 wheel, 19 Max(x, -0.4) after LeakyRelu, 5 MaxPool):
    check -> quantize -> export -> run --check, fake-quant == runner codes."""
    wheels = sorted(_cache().glob("openwakeword-0.5.1-*.whl"))
    if not wheels:
        pytest.skip("openwakeword==0.5.1 wheel not cached (pip download --no-deps openwakeword==0.5.1)")
    with zipfile.ZipFile(wheels[0]) as z:
        model = onnx.load_from_string(z.read("openwakeword/resources/models/embedding_model.onnx"))
    assert sum(n.op_type == "Max" for n in model.graph.node) == 19
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1  # batch 'unk__314' -> 1
    report = espq.check_model(model, target=target, bits=bits)
    assert report.ok, report.unsupported_message()
    assert report.counts()["float"] == 0
    rng = np.random.default_rng(0)
    calib = [rng.uniform(-2, 2, (1, 76, 32, 1)).astype(np.float32) for _ in range(4)]
    qm = _quantize(model, calib, target, bits)
    assert "Max" not in {n.op_type for n in qm.graph.nodes}
    fq, chip = _chain(qm, tmp_path / "emb.espdl", calib[0])
    np.testing.assert_array_equal(fq, chip)

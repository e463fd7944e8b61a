"""Issue 13 finding 2 on a real model: silero-vad's LSTM decoder (``silero_vad_openvino_16k.onnx`` from
the ``silero-vad`` wheel, its recurrent ``state`` fed as zeros). Before the fix 106 of 128 codes of the
LSTM's ``Y`` differed between fake-quant and the integer runner (esp32s3 int8), everything before the
LSTM bit-exact; now every code of Y and of both graph outputs agrees and the file's test values pass.

The wheel comes from PyPI (``pip download --no-deps silero-vad``) into ``~/.cache/espq-realmodels/silero``;
the test skips when it is not cached and cannot be fetched."""

from __future__ import annotations

import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import espq
from espq.sim.integer import IntegerRunner, check_test_values

CACHE = Path.home() / ".cache" / "espq-realmodels" / "silero"
MEMBER = "silero_vad/data/silero_vad_openvino_16k.onnx"


def _wheel() -> Path:
    found = sorted(CACHE.glob("silero_vad-*.whl"))
    if not found:
        try:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "silero-vad", "-d", str(CACHE)],
                check=True, capture_output=True, timeout=120,
            )  # fmt: skip
        except (OSError, subprocess.SubprocessError):
            pytest.skip("silero-vad wheel not cached and PyPI unreachable")
        found = sorted(CACHE.glob("silero_vad-*.whl"))
    if not found:
        pytest.skip("silero-vad wheel not available")
    return found[-1]


def _model_with_zero_state() -> onnx.ModelProto:
    with zipfile.ZipFile(_wheel()) as z:
        if MEMBER not in z.namelist():
            pytest.skip(f"{MEMBER} is not in this silero-vad wheel")
        model = onnx.load_from_string(z.read(MEMBER))
    state = next(i for i in model.graph.input if i.name == "state")
    shape = [d.dim_value or 1 for d in state.type.tensor_type.shape.dim]
    model.graph.initializer.append(numpy_helper.from_array(np.zeros(shape, np.float32), "state"))
    model.graph.input.remove(state)
    return model


@pytest.mark.slow
@pytest.mark.parametrize(("target", "bits"), [("esp32s3", 8), ("esp32p4", 16), ("c", 8)])
def test_silero_vad_lstm_fakequant_equals_runner(tmp_path, target, bits):
    rng = np.random.default_rng(0)
    t = np.arange(576) / 16000
    tones = [0.3 * np.sin(2 * np.pi * rng.uniform(100, 2000) * t) for _ in range(9)]
    audio = [(a + 0.05 * rng.standard_normal(576)).astype(np.float32) for a in tones]
    calib = [a[None] for a in audio[:8]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qm = espq.quantize(
            _model_with_zero_state(), calib, target=target, bits=bits, input_shape=[1, 576], progress=False
        )
    lstm = next(n for n in qm.graph.nodes if n.op_type == "LSTM")
    assert qm.plan.node_types[lstm.name] == f"S{bits}"
    path = tmp_path / "silero.espdl"
    qm.export(path, export_test_values=True, export_config=False)
    assert check_test_values(path).ok
    runner = IntegerRunner(path)
    x = audio[8][None]
    for name, size in [(lstm.outputs[0], 128), ("output", 1), ("stateN", 256)]:
        ours = qm.run(x, outputs=[name])[name]
        chip = runner.run(x, outputs=[name])[name]
        e = qm.plan.tensors[name].exponent
        a, b = np.rint(ours * 2.0**-e), np.rint(chip * 2.0**-e)
        assert a.size == size and a.shape == b.shape
        assert int((a != b).sum()) == 0, (name, int((a != b).sum()), a.size)
    assert 0.0 <= float(runner.run(x)["output"].reshape(-1)[0]) <= 1.0  # a speech probability

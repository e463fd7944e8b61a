"""Blockwise reconstruction (learned rounding), block bias correction and LSQ: losses drop, weights on
their grids, exact export, seeded files identical, ESP-PPQ's settings switch them on."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import espq
from espq.quant.finetune import ReconstructionOptions, block_bias_correction, reconstruct
from espq.quant.finetune.reconstruct import beta_at, initial_v, rectified_sigmoid
from espq.quant.model import QuantizedModel
from espq.quant.steps import PLAN
from espq.sim.integer import IntegerRunner
from espq.sim.integer.check import check_test_values


@pytest.fixture(scope="module")
def demo():
    from espq.demo import digits_data, make_model, train
    from espq.frontends import export_torch, load_onnx

    torch.manual_seed(0)
    x_train, y_train, x_test, _ = digits_data()
    model = make_model()
    train(model, x_train, y_train, epochs=2)
    graph = espq.load(load_onnx(export_torch(model, input_shape=[1, 1, 8, 8])))
    calib = [x_train[i : i + 32] for i in range(0, 128, 32)]
    qm = espq.quantize(graph, calib, target="esp32s3", progress=False)
    return qm, [{qm.graph.inputs[0]: b} for b in calib], x_test


def _nsr(qm: QuantizedModel, x: np.ndarray) -> float:
    name = qm.graph.outputs[0]
    q, f = qm.run(x)[name], qm.run_float(x)[name]
    return float(((q - f) ** 2).sum() / (f**2).sum())


def _on_grid(graph, plan) -> list[str]:
    """Quantized weights (own exponent) that are not exactly a code times 2^e."""
    bad = []
    for name, spec in plan.tensors.items():
        if name not in graph.initializers or spec.source != "observed" or spec.group is not None:
            continue
        w = graph.initializers[name].astype(np.float64)
        e = np.asarray(spec.exponent, dtype=np.float64)
        if e.ndim:
            e = e.reshape([-1 if i == spec.axis else 1 for i in range(w.ndim)])
        codes = w * np.exp2(-e)
        if not np.array_equal(codes, np.round(codes)):
            bad.append(name)
    return bad


def test_rectified_sigmoid_starts_at_the_fraction_and_beta_anneals():
    frac = torch.tensor([0.0, 0.25, 0.5, 0.9])
    assert torch.allclose(rectified_sigmoid(initial_v(frac)), frac, atol=1e-6)
    assert beta_at(200, 1000) == pytest.approx(20.0) and beta_at(1000, 1000) == pytest.approx(2.0)
    assert 2.0 < beta_at(600, 1000) < 20.0


def test_reconstruction_beats_nearest_rounding_and_exports_exactly(demo, tmp_path):
    qm, batches, x_test = demo
    before_plan = qm.plan.to_json()
    weights_before = {k: v.copy() for k, v in qm.graph.initializers.items()}
    opts = ReconstructionOptions(steps=60, lr=1e-2, collecting_device="cpu")
    res = reconstruct(qm.graph, qm.plan, qm.target, batches, qm.float_graph, opts)
    assert qm.plan.to_json() == before_plan  # inputs untouched
    assert all(np.array_equal(weights_before[k], v) for k, v in qm.graph.initializers.items())
    kept = [b for b in res.blocks if b.kept]
    assert kept and all(b.loss_after < b.loss_before for b in kept)  # block MSE below nearest rounding
    assert res.plan.to_json() == before_plan  # exponents fixed without is_scale_trainable
    assert _on_grid(res.graph, res.plan) == []  # hard rounding written back onto the weights' grids
    assert _on_grid(qm.graph, qm.plan)  # (the calibrated float weights are not)
    tuned = QuantizedModel(res.graph, res.plan, qm.target, float_graph=qm.float_graph)
    assert _nsr(tuned, x_test) < _nsr(qm, x_test)
    paths = []
    for run in range(2):  # seeded: the same file twice
        again = res if run == 0 else reconstruct(qm.graph, qm.plan, qm.target, batches, qm.float_graph, opts)
        model = QuantizedModel(again.graph, again.plan, qm.target, float_graph=qm.float_graph)
        paths.append(tmp_path / f"rec{run}.espdl")
        model.export(paths[-1], export_test_values=True, test_inputs=[x_test[:1]])
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert check_test_values(paths[0]).ok
    runner = IntegerRunner(paths[0])
    name = qm.graph.outputs[0]
    chip = np.concatenate([runner.run(x_test[i : i + 1])[name] for i in range(30)])
    assert np.array_equal(chip, tuned.run(x_test[:30])[name])


def test_reconstruction_rolls_back_and_trains_exponents_when_asked(demo):
    qm, batches, _ = demo
    bad = reconstruct(
        qm.graph, qm.plan, qm.target, batches[:1], qm.float_graph,
        ReconstructionOptions(steps=3, lr=50.0, gamma=0.0, collecting_device="cpu"),
    )  # fmt: skip
    rolled = [b for b in bad.blocks if not b.kept]
    assert rolled and all(b.loss_after >= b.loss_before for b in rolled)
    if not any(b.kept for b in bad.blocks):
        assert all(np.array_equal(bad.graph.initializers[k], v) for k, v in qm.graph.initializers.items())
    scaled = reconstruct(
        qm.graph, qm.plan, qm.target, batches, qm.float_graph,
        ReconstructionOptions(steps=20, lr=1e-2, is_scale_trainable=True, collecting_device="cpu"),
    )  # fmt: skip
    for spec in list(scaled.plan.tensors.values()) + list(scaled.plan.requant.values()):
        e = spec.exponent
        assert all(isinstance(v, int) for v in (e if isinstance(e, tuple) else (e,)))
    with pytest.raises(espq.errors.ConfigError, match="collecting_device"):
        ReconstructionOptions(collecting_device="disk").validate()


def test_block_bias_correction_lowers_block_loss_and_keeps_weights(demo):
    qm, batches, x_test = demo
    res = block_bias_correction(qm.graph, qm.plan, qm.target, batches, qm.float_graph, block_size=1, steps=2)
    assert res.blocks and all(b.loss_after < b.loss_before for b in res.blocks if b.kept)
    new = res.graph.initializers
    changed = [k for k, v in qm.graph.initializers.items() if not np.array_equal(new[k], v)]
    biases = {n.inputs[2] for n in qm.graph.nodes if n.op_type in ("Conv", "Gemm") and len(n.inputs) > 2}
    assert changed and set(changed) <= biases  # only biases move
    first = [res.blocks[0].ops[0]]
    only = block_bias_correction(qm.graph, qm.plan, qm.target, batches, block_size=1, interested_layers=first)
    assert len(only.blocks) == 1
    with pytest.raises(espq.errors.ConfigError, match="block_size >= 1"):
        block_bias_correction(qm.graph, qm.plan, qm.target, batches, block_size=0)


def test_esp_ppq_switches_map_onto_the_steps(demo):
    from espq.api import QuantizationSettingFactory
    from espq.api.espdl import to_quant_setting
    from espq.quant import recipes

    s = QuantizationSettingFactory.espdl_setting()
    s.blockwise_reconstruction = True
    s.blockwise_reconstruction_setting.steps = 9
    s.lsq_optimization = True
    s.lsq_optimization_setting.block_size = 2
    s.bias_correct = True
    s.bias_correct_setting.block_size = 1
    s.bias_correct_setting.steps = 3
    steps = recipes.resolve(to_quant_setting(s, 8, {}))
    assert steps.names == ("bias_correction", "lsq", "blockwise_reconstruction")
    opts = dict(steps.steps)
    assert opts["blockwise_reconstruction"]["steps"] == 9 and opts["blockwise_reconstruction"]["lr"] == 1e-3
    assert opts["lsq"]["block_size"] == 2 and opts["bias_correction"]["steps"] == 3
    built = steps.build(PLAN)
    assert built[0].block_size == 1 and built[2].options.gamma == 1.0
    # LSQ on a power-of-two target: weights only, with a warning
    qm, batches, x_test = demo
    with pytest.warns(UserWarning, match="tunes weights only"):
        tuned = espq.quantize(
            qm.float_graph, [b[qm.graph.inputs[0]] for b in batches], target="esp32s3", progress=False,
            setting=espq.QuantSetting(steps={"lsq": {"steps": 20, "lr": 1e-3, "collecting_device": "cpu"}}),
        )  # fmt: skip
    assert tuned.plan.to_json() == qm.plan.to_json()  # exponents as calibrated
    assert any(not np.array_equal(tuned.graph.initializers[k], v) for k, v in qm.graph.initializers.items())

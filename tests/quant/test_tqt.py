"""TQT per block (espq.quant.finetune.tqt) and its step: losses drop, roll-back, exact export."""

from __future__ import annotations

import numpy as np
import pytest

import espq
from espq.quant.finetune import TQTOptions, split_blocks, tqt_optimize
from espq.quant.model import QuantizedModel
from espq.quant.steps import PLAN, make_step
from espq.sim.integer import IntegerRunner
from espq.sim.integer.check import check_test_values
from espq.sim.trainable import TrainableFakeQuant


@pytest.fixture(scope="module")
def demo():
    from espq.demo import digits_data, make_model, train
    from espq.frontends import export_torch, load_onnx

    x_train, y_train, x_test, _ = digits_data()
    model = make_model()
    train(model, x_train, y_train, epochs=2)
    graph = espq.load(load_onnx(export_torch(model, input_shape=[1, 1, 8, 8])))
    calib = [x_train[i : i + 32] for i in range(0, 256, 32)]
    qm = espq.quantize(graph, calib, target="esp32s3", progress=False)
    return qm, calib, x_test


def _nsr(qm: QuantizedModel, x: np.ndarray) -> float:
    name = qm.graph.outputs[0]
    q, f = qm.run(x)[name], qm.run_float(x)[name]
    return float(((q - f) ** 2).sum() / (f**2).sum())


def test_blocks_hold_at_most_block_size_computing_ops(demo):
    qm, _, _ = demo
    module = TrainableFakeQuant(qm.graph, qm.plan, qm.target)
    convs = [n.name for n in module.graph.nodes if n.op_type in ("Conv", "Gemm")]
    for size, want in ((1, len(convs)), (2, -(-len(convs) // 2)), (100, 1)):
        blocks = split_blocks(module, size)
        assert len(blocks) == want
        assert blocks[0][0] == 0 and blocks[-1][1] == len(module.graph.nodes)
        assert all(a[1] == b[0] for a, b in zip(blocks, blocks[1:]))


def test_tqt_lowers_error_and_export_is_bit_exact(demo, tmp_path):
    qm, calib, x_test = demo
    graph_before = {k: v.copy() for k, v in qm.graph.initializers.items()}
    plan_before = qm.plan.to_json()
    batches = [{qm.graph.inputs[0]: b} for b in calib]
    res = tqt_optimize(qm.graph, qm.plan, qm.target, batches, qm.float_graph, TQTOptions(steps=40, lr=1e-3))
    # inputs untouched
    assert qm.plan.to_json() == plan_before
    assert all(np.array_equal(graph_before[k], v) for k, v in qm.graph.initializers.items())
    assert res.blocks and all(b.loss_after < b.loss_before for b in res.blocks if b.kept)
    assert any(b.kept for b in res.blocks)
    tuned = QuantizedModel(res.graph, res.plan, qm.target, float_graph=qm.float_graph)
    before, after = _nsr(qm, x_test), _nsr(tuned, x_test)
    assert after < 0.9 * before, (before, after)
    for spec in list(res.plan.tensors.values()) + list(res.plan.requant.values()):
        e = spec.exponent
        assert all(isinstance(v, int) for v in (e if isinstance(e, tuple) else (e,)))
    # biases follow the new input/weight exponents (re-derived), and the export is exact
    path = tmp_path / "tqt.espdl"
    tuned.export(path, export_test_values=True, test_inputs=[x_test[:1]])
    assert check_test_values(path).ok
    runner = IntegerRunner(path)
    name = qm.graph.outputs[0]
    chip = np.concatenate([runner.run(x_test[i : i + 1])[name] for i in range(40)])
    assert np.array_equal(chip, tuned.run(x_test[:40])[name])


def test_block_that_gets_worse_is_rolled_back(demo):
    qm, calib, _ = demo
    batches = [{qm.graph.inputs[0]: b} for b in calib[:2]]
    res = tqt_optimize(qm.graph, qm.plan, qm.target, batches, qm.float_graph, TQTOptions(steps=5, lr=5.0))
    rolled = [b for b in res.blocks if not b.kept]
    assert rolled and all(b.loss_after >= b.loss_before for b in rolled)
    if not any(b.kept for b in res.blocks):  # everything rolled back: the model is the calibrated one
        assert res.plan.to_json() == qm.plan.to_json()
        assert all(np.array_equal(res.graph.initializers[k], v) for k, v in qm.graph.initializers.items())


def test_float_block_inputs_run_and_options_are_checked(demo):
    qm, calib, _ = demo
    batches = [{qm.graph.inputs[0]: b} for b in calib[:2]]
    res = tqt_optimize(
        qm.graph, qm.plan, qm.target, batches, qm.float_graph, TQTOptions(steps=5, block_inputs="float")
    )
    assert len(res.blocks) == len(split_blocks(TrainableFakeQuant(qm.graph, qm.plan, qm.target), 4))
    with pytest.raises(espq.errors.ConfigError, match="block_inputs"):
        TQTOptions(block_inputs="mixed").validate()
    with pytest.raises(espq.errors.ConfigError, match="bad options for step 'tqt'"):
        make_step("tqt", {"stepz": 3})


def test_tqt_step_in_quantize(demo):
    qm, calib, x_test = demo
    tuned = espq.quantize(
        qm.float_graph,
        calib,
        target="esp32s3",
        progress=False,
        setting=espq.quant.setting.QuantSetting(steps={"tqt": {"steps": 20, "lr": 1e-3}}),
    )
    assert "tqt" in tuned.steps.names
    assert _nsr(tuned, x_test) < _nsr(qm, x_test)


def test_qat_trainable_update_lowers_label_loss_and_exports_exactly(tmp_path):
    import torch

    from espq.demo import digits_data, make_model, train
    from espq.frontends import export_torch, load_onnx

    x_train, y_train, x_test, y_test = digits_data()
    model = make_model()
    train(model, x_train, y_train, epochs=1)
    graph = espq.load(load_onnx(export_torch(model, input_shape=[1, 1, 8, 8])))
    qm = espq.quantize(
        graph, [x_train[i : i + 64] for i in range(0, 256, 64)], target="esp32p4", progress=False
    )
    name = qm.graph.outputs[0]
    module = qm.trainable()
    with torch.no_grad():
        assert np.array_equal(module(torch.as_tensor(x_test)).numpy(), qm.run(x_test)[name])

    def label_loss() -> float:
        return float(
            torch.nn.functional.cross_entropy(
                torch.as_tensor(qm.run(x_train)[name]), torch.as_tensor(y_train)
            )
        )

    before = label_loss()
    opt = torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=1e-3)
    xt, yt = torch.as_tensor(x_train), torch.as_tensor(y_train)
    for step in range(30):
        idx = slice((step * 64) % 1280, (step * 64) % 1280 + 64)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(module(xt[idx]), yt[idx]).backward()
        opt.step()
    qm.update(module)
    after = label_loss()
    assert after < 0.9 * before, (before, after)
    with torch.no_grad():
        assert np.array_equal(module.eval()(torch.as_tensor(x_test)).numpy(), qm.run(x_test)[name])
    path = tmp_path / "qat.espdl"
    qm.export(path, export_test_values=True, test_inputs=[x_test[:1]])
    assert check_test_values(path).ok
    runner = IntegerRunner(path)
    chip = np.concatenate([runner.run(x_test[i : i + 1])[name] for i in range(40)])
    assert np.array_equal(chip, qm.run(x_test[:40])[name])
    with pytest.raises(espq.errors.ConfigError, match="does not belong"):
        qm.update(TrainableFakeQuant(qm.float_graph.copy(), _other_plan(qm), qm.target))


def _other_plan(qm: QuantizedModel):
    import copy

    plan = copy.deepcopy(qm.plan)
    plan.tensors["not_a_tensor"] = next(iter(plan.tensors.values()))
    return plan


def test_esp_ppq_tqt_settings_switch_on_the_step_with_their_fields():
    from dataclasses import asdict

    from espq.api import QuantizationSettingFactory, TQTSetting
    from espq.api.espdl import to_quant_setting
    from espq.quant import recipes

    defaults = asdict(TQTOptions())
    defaults.pop("block_inputs")
    ppq = {n: getattr(TQTSetting(), n) for n in defaults}
    assert {**defaults, "interested_layers": []} == ppq  # ESP-PPQ's defaults
    s = QuantizationSettingFactory.espdl_setting()
    assert "tqt" not in recipes.resolve(to_quant_setting(s, 8, {})).names
    s.tqt_optimization = True
    s.tqt_optimization_setting.steps = 7
    s.tqt_optimization_setting.block_size = 2
    s.tqt_optimization_setting.lr = 1e-4
    steps = recipes.resolve(to_quant_setting(s, 8, {}))
    options = dict(steps.steps)["tqt"]
    assert (options["steps"], options["block_size"], options["lr"]) == (7, 2, 1e-4)
    assert steps.build(PLAN)[-1].options.steps == 7


def test_holdout_keeps_tqt_only_when_it_helps_on_held_aside_batches(demo):
    from espq.quant.steps import StepContext

    qm, calib, _ = demo
    batches = [{qm.graph.inputs[0]: b} for b in calib]
    context = StepContext(
        graph=qm.graph, target=qm.target, plan=qm.plan, batches=batches, float_graph=qm.float_graph
    )
    bad = make_step("tqt", {"holdout": 2, "steps": 5, "lr": 5.0})
    out = bad.apply(context)
    assert bad.kept is False and out is context  # a step that hurts leaves the calibrated model
    good = make_step("tqt", {"holdout": 2, "steps": 40, "lr": 1e-3})
    out = good.apply(context)
    assert good.kept is (out is not context)
    if good.kept:
        held = {qm.graph.inputs[0]: np.concatenate(calib[-2:])}
        tuned = QuantizedModel(out.graph, out.plan, qm.target, float_graph=qm.float_graph)
        assert _nsr(tuned, held[qm.graph.inputs[0]]) < _nsr(qm, held[qm.graph.inputs[0]])
    with pytest.raises(espq.errors.ConfigError, match="holdout"):
        make_step("tqt", {"holdout": -1})
    with pytest.raises(espq.errors.ConfigError, match="needs more kept calibration batches"):
        make_step("tqt", {"holdout": 8}).apply(context)

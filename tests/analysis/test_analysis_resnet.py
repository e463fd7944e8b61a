"""The fast layer-wise pass equals a straightforward one-op-at-a-time implementation (ESP-PPQ's loop)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import espq
from espq.analysis import analyse
from espq.analysis.metrics import Recorder
from espq.analysis.ops import QuantOpEvaluator, measured_ops
from espq.quant.data import iter_feeds
from espq.sim.float.executor import run_graph
from espq.sim.float.registry import KERNELS

SHARED = Path(__file__).resolve().parents[2].parent / "shared"


def straightforward_layerwise(qm, batches) -> dict[str, float]:
    """ESP-PPQ's algorithm: per op, per batch, the whole float model and the whole model with only that op
    quantized (esp_ppq_facts.md §5.3)."""
    graph = qm.graph
    evaluator = QuantOpEvaluator(graph, qm.sim)
    out = {}
    for op in measured_ops(graph, qm.plan.node_types):
        rec = Recorder()

        def kernel(node, inputs, op=op):
            if node.name == op.name:
                return evaluator.evaluate(node, inputs, own_inputs="active")
            return KERNELS[node.op_type](node, inputs)

        for feeds in iter_feeds(graph, batches):
            import torch

            feeds = {k: torch.as_tensor(v) for k, v in feeds.items()}
            fp = run_graph(graph, feeds)
            qt = run_graph(graph, feeds, kernels={op.op_type: kernel})
            for name in graph.outputs:
                rec.update(qt[name], fp[name])
        out[op.name] = rec.value("snr")
    return out


@pytest.fixture(scope="module")
def resnet20():
    path = SHARED / "models" / "cifar10_resnet20.onnx"
    if not path.exists():
        pytest.skip(f"{path} not present")
    rng = np.random.default_rng(0)
    calib = [rng.standard_normal((8, 3, 32, 32)).astype(np.float32)]
    return espq.quantize(str(path), calib, target="esp32p4", progress=False)


def test_fast_layerwise_equals_straightforward(resnet20):
    rng = np.random.default_rng(1)
    batches = [rng.standard_normal((n, 3, 32, 32)).astype(np.float32) for n in (4, 3)]
    fast = analyse(resnet20, batches, kinds=("layerwise",), progress=False).layerwise
    slow = straightforward_layerwise(resnet20, batches)
    assert len(fast) >= 20 and set(fast) == set(slow)
    for name, v in slow.items():
        assert fast[name] == pytest.approx(v, abs=1e-6), name
    assert max(fast.values()) > 1e-4  # not trivially zero


def test_graphwise_grows_and_isolated_is_local(resnet20):
    rng = np.random.default_rng(2)
    batches = [rng.standard_normal((4, 3, 32, 32)).astype(np.float32)]
    r = analyse(resnet20, batches, kinds=("graphwise", "isolated"), progress=False)
    ops = [op.name for op in r.ops]
    # the first op sees only the input rounding: accumulated == local there
    assert r.graphwise[ops[0]] == pytest.approx(r.isolated[ops[0]], rel=1e-9)
    # deep ops accumulate: the last op's graph-wise error exceeds its own local error
    assert r.graphwise[ops[-1]] > r.isolated[ops[-1]]

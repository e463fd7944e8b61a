"""Exponent search: neighbouring power-of-two exponents chosen by measured/expected error."""

from __future__ import annotations

import numpy as np
import torch
from qhelpers import conv_relu_add_model, random_batches

import espq
from espq.ir.spec import DERIVED
from espq.quant.exponent_search import best_activation_exponent, best_weight_exponents, rounding_error
from espq.quant.observers import TensorStats, exponent_minmax, weight_exponents


def test_weight_search_takes_the_finer_exponent_when_one_outlier_costs_less():
    rng = np.random.default_rng(0)
    w = np.zeros((2, 200))
    w[0] = rng.uniform(-0.9, 0.9, 200)
    w[0, 0] = 1.0  # minmax: e = -6 (step 1/64); e = -7 clips this value by 1/128 but halves every step
    w[1] = rng.integers(-64, 64, 200) / 64.0  # exactly on the e = -6 grid (like the zoo's int8 weights)
    w[1, 0] = 1.0
    e0 = weight_exponents(w, 8, 0)
    assert e0 == (-6, -6)
    assert best_weight_exponents(w, e0, 8, 0) == (-7, -6)
    err = rounding_error(w, np.array([-7, -6]), 8, 0)
    assert err[1] == 0.0 and err[0] < rounding_error(w, np.array([-6, -6]), 8, 0)[0]


def test_weight_search_per_tensor():
    w = np.linspace(-0.9, 0.9, 301)
    w[0] = -1.0
    assert best_weight_exponents(w, exponent_minmax(1.0, 8), 8, None) == -7


def test_activation_search_clips_a_rare_outlier():
    stats = TensorStats()
    x = torch.randn(200_000, generator=torch.Generator().manual_seed(0))
    stats.update(torch.cat([x, torch.tensor([100.0])]))
    e0 = exponent_minmax(stats.absmax, 8)
    assert e0 == 0
    assert best_activation_exponent(stats, e0, 8) == -1  # neighbours only (radius 1)
    assert best_activation_exponent(stats, e0, 8, radius=3) == -1  # clipping 100 at 16 or 32 costs more


def test_activation_search_keeps_a_tight_range():
    stats = TensorStats()
    stats.update(torch.linspace(-127, 127, 10_001) / 64)  # exactly fills e = -6 at 8 bits
    assert best_activation_exponent(stats, -6, 8) == -6


def test_quantize_with_exponent_search_moves_exponents_by_at_most_one():
    model = conv_relu_add_model()
    data = random_batches([1, 3, 8, 8], n=4, batch=8)
    plain = espq.quantize(model, data, target="esp32s3", progress=False)
    setting = espq.QuantSetting(exponent_search=True)
    searched = espq.quantize(model, data, target="esp32s3", setting=setting, progress=False)
    assert set(plain.plan.tensors) == set(searched.plan.tensors)
    moved = 0
    for name, spec in plain.plan.tensors.items():
        new = searched.plan.tensors[name]
        if spec.source == DERIVED:
            node = searched.graph.node(new.ref[0].rsplit(":", 1)[0])
            e_in = searched.plan.input_spec(node.name, 0, node.inputs[0]).exponent
            assert new.exponent == e_in + searched.plan.tensors[new.ref[1]].exponent
        elif spec.exponent is not None:
            delta = np.abs(np.subtract(new.exponent, spec.exponent))
            assert np.all(delta <= 1)
            moved += int(np.any(delta))
    assert moved >= 1
    x = data[0]
    f = plain.run_float(x)["y"]
    nsr = [float(((qm.run(x)["y"] - f) ** 2).sum() / (f**2).sum()) for qm in (plain, searched)]
    assert nsr[1] <= nsr[0] * 1.05

"""ESP-PPQ 1.3.12's AutoQuant API (esp_ppq/autoquant, esp_ppq_2026.md §1.6) on espq's search.

``espdl_auto_quantize_onnx``, ``AutoQuantSearchSetting`` (same fields and defaults),
``load_best_setting`` and ``low_latency_candidate_filter`` keep ESP-PPQ's names, signatures and run
directory. Each ESP-PPQ (strategy, params) sample is mapped onto an espq
:class:`~espq.autoquant.space.Config`; samples that map to the same configuration run once, so ESP-PPQ's
~1 M default "exhaustive" samples become a few dozen runs. What does not carry over, on purpose:

* ``tqt``, ``blockwise_reconstruction`` and ``horizontal_layer_split`` are not implemented in espq:
  strategies that switch them on are skipped with one warning naming them (never run as something else);
* ``fusion_alignment`` parameters and bias correction's ``block_size``/``steps``/``topk`` have no
  counterpart (espq aligns as ESP-DL's op rules say and corrects every bias empirically): they are
  recorded but do not change the run;
* ``mixed_precision.topk`` promotes up to ``topk`` layers with espq's greedy neighbour-group AMP;
* ``"fast"`` mode is espq's staged successive-halving search, with ``top_strategy`` finalists reaching
  ``evaluate_fn``; ``"exhaustive"`` runs and evaluates every distinct configuration;
* ``evaluate_fn`` receives an :class:`espq.QuantizedModel` (``qm.run(x)``), not a PPQ ``BaseGraph``.
"""

from __future__ import annotations

import itertools
import json
import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from espq.api.espdl import to_quant_setting
from espq.api.settings import QuantizationSetting
from espq.autoquant import autoquant
from espq.autoquant.space import Config
from espq.errors import ConfigError

CandidateFilter = Callable[[dict[str, Any]], bool]
#: ESP-PPQ modules espq does not implement (strategies switching them on are skipped)
UNSUPPORTED_MODULES = ("tqt", "blockwise_reconstruction", "horizontal_layer_split")
#: ESP-PPQ parameters that decide an espq run (others are recorded only)
RELEVANT_PARAMS = {
    "num_of_bits": ("value",),
    "calib_algorithm": ("method",),
    "weight_equalization": ("opt_level", "iterations", "value_threshold"),
    "mixed_precision": ("topk",),
}
OBSERVER_NAMES = {"kl": "kl", "minmax": "minmax", "percentile": "percentile", "mse": "mse"}


def low_latency_candidate_filter(record: dict[str, Any]) -> bool:
    """True for candidates without int16 promotion or layer splitting (ESP-PPQ's Top-K balancing)."""
    s = record.get("strategy", {})
    return not s.get("mixed_precision", False) and not s.get("horizontal_layer_split", False)


class AutoQuantSearchSetting:
    """ESP-PPQ 1.3.12's AutoQuant search setting: ``strategy_space`` (module -> on/off values),
    ``param_space`` (module -> knob -> list or (start, end, step)), the search behaviour fields and the
    fast-mode knobs, with its defaults. ``quant_setting``: a base :class:`QuantizationSetting` (per-layer
    int16 in its dispatching table is kept). Setting a field espq lacks raises ``AttributeError``."""

    __slots__ = (
        "strategy_space",
        "param_space",
        "num_of_candidates",
        "search_mode",
        "candidate_filter",
        "score_direction",
        "run_dir",
        "resume",
        "quant_setting",
        "top_strategy",
        "early_stop_patience",
        "structural_knobs",
    )

    def __init__(
        self,
        num_of_candidates: int = 5,
        search_mode: str = "exhaustive",
        candidate_filter: CandidateFilter | None = low_latency_candidate_filter,
        score_direction: str = "maximize",
        run_dir: str = "outputs/auto_quant",
        resume: bool = False,
    ) -> None:
        self.strategy_space: dict[str, list[bool]] = {
            "num_of_bits": [True],
            "calib_algorithm": [True],
            "weight_equalization": [True, False],
            "horizontal_layer_split": [False],
            "bias_correction": [True, False],
            "mixed_precision": [False],
            "tqt": [True, False],
            "fusion_alignment": [True],
            "blockwise_reconstruction": [True, False],
        }
        self.param_space: dict[str, dict[str, Any]] = {
            "num_of_bits": {"value": [8]},
            "calib_algorithm": {"method": ["kl", "percentile", "mse"]},
            "weight_equalization": {
                "iterations": [10, 50, 100],
                "value_threshold": [0.1, 0.5, 2],
                "opt_level": [2],
            },
            "horizontal_layer_split": {"topk": [1], "value_threshold": [0.1, 0.2]},
            "bias_correction": {"block_size": [4, 2, 1], "steps": [32], "topk": [-1, 1, 2, 3]},
            "mixed_precision": {"topk": [3]},
            "tqt": {
                "lr": [1e-5, 5e-5],
                "steps": [500, 1000, 2000],
                "block_size": [4, 2, 1],
                "is_scale_trainable": [True],
                "gamma": [0.0],
                "int_lambda": [0.0],
                "collecting_device": ["cpu"],
                "topk": [-1],
            },
            "fusion_alignment": {
                "elementwise_to": ["Align to Large", "Align to Output"],
                "concat_to": ["Align to Large", "Align to Output"],
                "avgpooling_to": ["Align to Input", "Align to Output"],
                "resize_to": ["Align to Input", "Align to Output"],
                "force_overlap": [False],
            },
            "blockwise_reconstruction": {
                "is_scale_trainable": [False],
                "topk": [-1, 1, 2, 3],
                "block_size": [4, 2],
                "steps": [1000],
                "lr": [1e-4],
                "gamma": [1.0],
                "collecting_device": ["cpu"],
            },
        }
        self.num_of_candidates = num_of_candidates
        self.search_mode = search_mode
        self.candidate_filter = candidate_filter
        self.score_direction = score_direction
        self.run_dir = run_dir
        self.resume = resume
        self.quant_setting: QuantizationSetting | None = None
        self.top_strategy = 10
        self.early_stop_patience = 3
        self.structural_knobs: dict[str, list[str]] = {
            "calib_algorithm": ["method"],
            "num_of_bits": ["value"],
        }

    def validate(self) -> None:
        """Raise :class:`ConfigError` on a bad search field."""
        if self.search_mode not in ("exhaustive", "fast"):
            raise ConfigError(f"search_mode must be 'exhaustive' or 'fast', got {self.search_mode!r}")
        if self.score_direction not in ("maximize", "minimize"):
            raise ConfigError(
                f"score_direction must be 'maximize' or 'minimize', got {self.score_direction!r}"
            )
        for name in ("num_of_candidates", "top_strategy"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"setting.{name} must be a positive integer, got {v!r}")


def _values(module: str, knob: str, v: Any) -> list[Any]:
    if isinstance(v, list):
        return v
    if isinstance(v, tuple) and len(v) == 3:
        start, end, step = v
        if step <= 0:
            raise ConfigError(f"param_space[{module!r}][{knob!r}]: step must be positive, got {step}")
        n = int(np.floor((end - start) / step + 1e-9)) + 1
        return [round(start + i * step, 12) for i in range(n)]
    raise ConfigError(f"param_space[{module!r}][{knob!r}] must be a list or (start, end, step), got {v!r}")


def _module_samples(space: dict[str, dict[str, Any]], module: str) -> list[dict[str, Any]]:
    """The module's parameter samples; knobs that do not change an espq run keep their first value."""
    raw = space.get(module, {})
    keys = list(raw)
    grids = [
        _values(module, k, raw[k]) if k in RELEVANT_PARAMS.get(module, ()) else _values(module, k, raw[k])[:1]
        for k in keys
    ]
    return [dict(zip(keys, combo)) for combo in itertools.product(*grids)]


def enumerate_samples(setting: AutoQuantSearchSetting) -> Iterator[tuple[dict[str, bool], dict[str, Any]]]:
    """ESP-PPQ (strategy, params) samples in its order, without unsupported modules; params of knobs that
    do not change an espq run are pinned to their first value (so the list stays small)."""
    modules = list(setting.strategy_space)
    skipped = set()
    for switches in itertools.product(*(setting.strategy_space[m] for m in modules)):
        strategy = {m: bool(v) for m, v in zip(modules, switches)}
        bad = [m for m in UNSUPPORTED_MODULES if strategy.get(m)]
        if bad:
            skipped.update(bad)
            continue
        on = [m for m in modules if strategy[m]]
        for combo in itertools.product(*(_module_samples(setting.param_space, m) for m in on)):
            params: dict[str, Any] = {m: None for m in modules}
            params.update(dict(zip(on, combo)))
            yield strategy, params
    if skipped:
        warnings.warn(
            f"AutoQuant: espq does not implement {', '.join(sorted(skipped))}; strategies that enable "
            "them were skipped",
            stacklevel=3,
        )


def to_config(strategy: dict[str, bool], params: dict[str, Any]) -> tuple[Config, int]:
    """The espq configuration and bit width of one ESP-PPQ sample."""
    bits = int(params["num_of_bits"]["value"]) if strategy.get("num_of_bits") else 8
    observer = "kl" if bits == 8 else "minmax"
    if strategy.get("calib_algorithm"):
        method = params["calib_algorithm"]["method"]
        if method not in OBSERVER_NAMES:
            raise ConfigError(f"calib_algorithm method {method!r} is not one of {', '.join(OBSERVER_NAMES)}")
        observer = OBSERVER_NAMES[method]
    eq = None
    if strategy.get("weight_equalization"):
        p = params["weight_equalization"]
        eq = (int(p.get("opt_level", 1)), int(p.get("iterations", 10)), float(p.get("value_threshold", 0.5)))
    int16 = int(params["mixed_precision"]["topk"]) if strategy.get("mixed_precision") else 0
    if strategy.get("mixed_precision") and int16 < 1:
        raise ConfigError(f"mixed_precision topk must be a positive integer, got {int16}")
    return Config(observer, eq, False, bool(strategy.get("bias_correction")), int16), bits


def _default_evaluate(calib: Iterable[Any], steps: int, collate_fn: Callable | None) -> Callable:
    """ESP-PPQ's default score: the mean of the 3 largest graphwise noise/signal ratios (minimize)."""

    def evaluate(qm: Any) -> tuple[float, dict[str, float]]:
        errors = qm.analyse(calib, steps=steps, kinds=("graphwise",), collate_fn=collate_fn, progress=False)
        values = sorted(errors.graphwise.values(), reverse=True)
        if not values:
            raise ConfigError("default evaluator: the model has no quantized computing op to score")
        top = values[:3]
        mean = float(sum(top) / len(top))
        return mean, {"topn_mean_error": mean, "topn_used": float(len(top)), "num_layers": float(len(values))}

    return evaluate


def espdl_auto_quantize_onnx(
    onnx_import_file: str,
    espdl_export_file: str,
    calib_dataloader: Iterable[Any],
    calib_steps: int,
    input_shape: Any,
    evaluate_fn: Callable[[Any], tuple[float, dict[str, float]]] | None = None,
    target: str = "esp32p4",
    collate_fn: Callable | None = None,
    setting: AutoQuantSearchSetting | None = None,
    device: str = "cpu",
    verbose: int = 0,
    workers: int = 1,
    backend: str = "process",
    **kwargs: Any,
) -> list[dict[str, Any]]:
    """Search quantization strategies as ESP-PPQ's AutoQuant does and return the Top-K records (best
    first; each with ``score``, ``hash``, ``index``, ``folder``, ``files``, ``strategy``, ``params`` and
    ``evaluate_fn``'s extras), also in ``<run_dir>/candidates.json``. The best candidate is also exported
    to ``espdl_export_file`` (+ ``.info``/``.json``). ``evaluate_fn(qm) -> (score, extras)``; without it
    the score is the mean of the 3 largest graphwise errors (lower is better). espq additions:
    ``workers``/``backend`` as in :func:`espq.autoquant`. Module docstring: what maps how."""
    if kwargs:
        raise ConfigError(f"unknown keyword argument(s) {sorted(kwargs)} for espdl_auto_quantize_onnx")
    if calib_dataloader is None:
        raise ConfigError("calib_dataloader is required")
    if isinstance(calib_steps, bool) or not isinstance(calib_steps, int) or calib_steps < 1:
        raise ConfigError(f"calib_steps must be a positive integer, got {calib_steps!r}")
    setting = setting or AutoQuantSearchSetting()
    setting.validate()
    described: dict[str, dict[str, Any]] = {}
    configs, widths = [], set()
    for strategy, params in enumerate_samples(setting):
        config, bits = to_config(strategy, params)
        widths.add(bits)
        if config.key() not in described:
            described[config.key()] = {"strategy": strategy, "params": params}
            configs.append(config)
    if not configs:
        raise ConfigError("the search space is empty (every strategy uses a module espq does not implement)")
    if len(widths) > 1:
        raise ConfigError(f"num_of_bits searches {sorted(widths)}: espq searches one width per call")
    bits = widths.pop()
    direction = setting.score_direction
    if evaluate_fn is None:
        evaluate_fn = _default_evaluate(calib_dataloader, calib_steps, collate_fn)
        direction = "minimize"
    base = to_quant_setting(setting.quant_setting, bits, {}) if setting.quant_setting is not None else None
    result = autoquant(
        onnx_import_file,
        calib_dataloader,
        target,
        evaluate=evaluate_fn,
        max_evaluations=setting.top_strategy,
        workers=workers,
        backend=backend,
        bits=bits,
        calib_steps=calib_steps,
        collate_fn=collate_fn,
        input_shape=[1, *input_shape],  # ESP-PPQ's AutoQuant takes the shape without the batch
        space=configs,
        setting=base,
        score_direction=direction,
        num_candidates=setting.num_of_candidates,
        candidate_filter=setting.candidate_filter,
        exhaustive=setting.search_mode == "exhaustive",
        run_dir=setting.run_dir,
        resume=setting.resume,
        device=device,
        log=print if verbose else None,
        describe=lambda cfg: described[Config.from_json(cfg).key()],
    )
    result.model.export(espdl_export_file)
    return result.candidates


def load_best_setting(
    candidates_file: str,
    run_dir: str | None = None,
    resume: bool = False,
    score_direction: str = "maximize",
    candidate_index: int = 0,
) -> AutoQuantSearchSetting:
    """An :class:`AutoQuantSearchSetting` ("exhaustive", one candidate) pinned to record
    ``candidate_index`` of ``candidates_file`` (best first); ``run_dir`` defaults to ``<its folder>/best``."""
    if score_direction not in ("maximize", "minimize"):
        raise ConfigError(f"score_direction must be 'maximize' or 'minimize', got {score_direction!r}")
    try:
        with open(candidates_file) as f:
            candidates = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"cannot read candidates file {candidates_file}: {e}") from e
    if not isinstance(candidates, list) or not candidates:
        raise ConfigError(f"{candidates_file} is empty or not a JSON list of candidate records")
    if not 0 <= candidate_index < len(candidates):
        raise ConfigError(f"candidate_index={candidate_index} out of range [0, {len(candidates)})")
    best = candidates[candidate_index]
    strategy = best.get("strategy")
    if not isinstance(strategy, dict) or not strategy:
        raise ConfigError(f"candidate {candidate_index} of {candidates_file} has no 'strategy'")
    if run_dir is None:
        run_dir = os.path.join(os.path.dirname(os.path.abspath(candidates_file)), "best")
    setting = AutoQuantSearchSetting(
        num_of_candidates=1,
        search_mode="exhaustive",
        score_direction=score_direction,
        run_dir=run_dir,
        resume=resume,
    )
    setting.strategy_space = {m: [bool(v)] for m, v in strategy.items()}
    for module, params in (best.get("params") or {}).items():
        if isinstance(params, dict):
            setting.param_space[module] = {k: [v] for k, v in params.items()}
    return setting


__all__ = [
    "AutoQuantSearchSetting",
    "enumerate_samples",
    "espdl_auto_quantize_onnx",
    "load_best_setting",
    "low_latency_candidate_filter",
    "to_config",
]

"""ESP-PPQ-compatible entry points: ``espdl_quantize_onnx``, ``espdl_quantize_torch``, ``espdl_quantize_tf``.

Scripts written for ESP-PPQ run after changing ``from esp_ppq.api import ...`` to
``from espq.api import ...``. Differences, each on purpose (see README "Migrating from ESP-PPQ"):

* the input ONNX file is never overwritten (ESP-PPQ saves its simplified model over it);
* unknown keyword arguments, unknown targets and bit widths other than 8/16 are errors, not
  silently ignored / turned into an FP32 export;
* test values come from a seeded generator, so two runs write identical files;
* the return value is an :class:`espq.QuantizedModel` (``.run`` = fake-quant inference,
  ``.run_float``, ``.plan``, ``.report`` = the error analysis when ``error_report``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from espq.api.platforms import platform_precision
from espq.api.settings import QuantizationSetting, QuantizationSettingFactory
from espq.errors import ConfigError, InputDataError
from espq.quant import QuantizedModel, QuantSetting, quantize
from espq.quant.model import export_outputs
from espq.quant.recipes import settings_from_compat
from espq.utils import atomic_write_bytes, check_outputs, is_foreign_file

#: keyword arguments ESP-PPQ forwards to get_target_platform / the exporter that espq implements
EXPORT_KWARGS = ("metadata_props", "model_version", "int16_lut_step")
#: ESP-PPQ's streaming export arguments, passed to QuantizedModel.export as they are
STREAMING_KWARGS = ("auto_streaming", "streaming_table", "streaming_input_shape", "streaming_custom_passes")
KNOWN_KWARGS = (
    *EXPORT_KWARGS, *STREAMING_KWARGS, "hi_precision", "dispatching_override", "dispatching_method",
    "encrypt_data",
)  # fmt: skip
#: ESP-PPQ features espq does not implement: a clear error instead of a silent no-op
UNSUPPORTED_KWARGS = {
    "config_path": "a custom .json path (the config is written beside the .espdl)",
}


def _check_kwargs(kwargs: dict[str, Any]) -> None:
    for key, value in kwargs.items():
        if key in UNSUPPORTED_KWARGS and value not in (None, False):
            raise ConfigError(f"{key}={value!r}: espq does not support {UNSUPPORTED_KWARGS[key]} yet")
    unknown = sorted(set(kwargs) - set(KNOWN_KWARGS) - set(UNSUPPORTED_KWARGS))
    if unknown:
        raise ConfigError(
            f"unknown keyword argument(s) {unknown}; espdl_quantize_* accepts {', '.join(KNOWN_KWARGS)}"
        )
    if kwargs.get("dispatching_method", "allin") != "allin":
        raise ConfigError("dispatching_method: only 'allin' (ESP-PPQ's espdl default) is supported")


def to_quant_setting(
    setting: QuantizationSetting | None, num_of_bits: int, kwargs: dict[str, Any]
) -> QuantSetting:
    """Map an ESP-PPQ-style settings object (plus deprecated ``dispatching_override``) to espq's."""
    setting = setting or QuantizationSettingFactory.espdl_setting(num_of_bits)
    setting.check()  # one ConfigError for every switched-on ESP-PPQ field espq does not implement
    precision = setting.dispatching_table.precision()
    for name, platform in (kwargs.get("dispatching_override") or {}).items():
        precision[name] = platform_precision(platform)
    algo = setting.quantize_activation_setting.calib_algorithm
    algo = algo.lower() if isinstance(algo, str) else algo  # ESP-PPQ's observer names are case-insensitive
    if num_of_bits == 16 and algo == "kl":
        algo = None  # ESP-PPQ's 16-bit default observer is min-max (KL has too few bins at 16 bit)
    return settings_from_compat(
        setting,
        QuantSetting(
            calib_algorithm=algo,
            layer_calib_algorithm=dict(setting.layer_calib_algorithm),
            precision=precision,
            recipe=setting.recipe,
        ),
    )


def _sample_inputs(qm: QuantizedModel, inputs: Any, input_shape: Any) -> list[np.ndarray]:
    """Test inputs: the user's (batch 1), else a seeded standard-normal draw per graph input."""
    if inputs is not None:
        items = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        return [x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x) for x in items]
    rng = np.random.default_rng(0)
    shapes = [qm.graph.shape(n) for n in qm.graph.inputs]
    return [rng.standard_normal(s).astype(np.float32) for s in shapes]


def _write_onnx(
    proto: Any, espdl_export_file: str | Path, skip_export: bool, export_config: bool, overwrite: bool
) -> Path:
    """Write the converted model to ``<stem>.onnx`` (as ESP-PPQ does) after checking every output path.

    The file carries an ``espq_written`` metadata entry, so a later run may replace it without
    ``overwrite`` (:func:`espq.utils.check_outputs`); ``proto`` itself is not changed. A ``<stem>.onnx``
    espq did not write (typically the user's own export of the same model, as in ESP-DL's sin example)
    is kept with a warning instead of stopping the run: the ONNX copy is a by-product, the ``.espdl``
    and its side files are still checked strictly.
    """
    import onnx

    onnx_path = Path(espdl_export_file).with_suffix(".onnx")
    outputs = [onnx_path] + ([] if skip_export else export_outputs(espdl_export_file, export_config))
    if not overwrite and is_foreign_file(onnx_path):
        check_outputs(outputs[1:], [onnx_path], overwrite)
        warnings.warn(
            f"kept '{onnx_path}': it exists and espq did not write it, so the converted ONNX is not saved "
            "there (ESP-PPQ would replace it); pass overwrite=True to replace it",
            stacklevel=3,
        )
        return onnx_path
    check_outputs(outputs, [], overwrite)
    marked = onnx.ModelProto()
    marked.CopyFrom(proto)
    marked.metadata_props.add(key="espq_written", value="onnx export of the model espq quantized")
    atomic_write_bytes(onnx_path, marked.SerializeToString())
    return onnx_path


def _run_pipeline(
    model: Any,
    espdl_export_file: str | Path,
    calib_dataloader: Iterable[Any],
    calib_steps: int,
    input_shape: Any,
    inputs: Any,
    target: str,
    num_of_bits: int,
    collate_fn: Callable | None,
    setting: QuantizationSetting | None,
    device: str,
    error_report: bool,
    skip_export: bool,
    export_config: bool,
    export_test_values: bool,
    test_output_names: list[str] | None,
    kwargs: dict[str, Any],
    overwrite: bool = False,
    sources: Sequence[str | Path] = (),
) -> QuantizedModel:
    _check_kwargs(kwargs)
    if not skip_export:
        check_outputs(export_outputs(espdl_export_file, export_config), sources, overwrite)
    if calib_dataloader is None:
        raise InputDataError("calib_dataloader is required (an iterable of calibration batches)")
    if calib_steps is None or isinstance(calib_steps, bool) or int(calib_steps) < 1:
        raise ConfigError(f"calib_steps must be a positive integer, got {calib_steps!r}")
    qsetting = to_quant_setting(setting, num_of_bits, kwargs)
    shape = input_shape if inputs is None else None
    qm = quantize(
        model,
        calib_dataloader,
        target=target,
        bits=num_of_bits,
        calib_steps=int(calib_steps),
        collate_fn=collate_fn,
        setting=qsetting,
        input_shape=shape,
        device=device,
    )
    step = setting.int16_lut_step() if setting is not None else qm.int16_lut_step
    if step != qm.int16_lut_step:  # lut_optimization(_setting.step): the step simulated and exported
        qm.int16_lut_step, qm._sim = step, None  # the simulator is rebuilt with it on next use
    if error_report:
        qm.report = qm.analyse(
            calib_dataloader, steps=8, kinds=("graphwise", "layerwise"), collate_fn=collate_fn
        )
        qm.report.print()
    qm.source_files = [Path(p) for p in sources]
    if not skip_export:
        test_inputs = _sample_inputs(qm, inputs, input_shape) if export_test_values else None
        qm.export(
            espdl_export_file,
            export_test_values=export_test_values,
            test_inputs=test_inputs,
            test_output_names=test_output_names,
            export_config=export_config,
            # ESP-PPQ's encrypt_data=True: a random key, written to <stem>.key / <stem>_key.h
            key="auto" if kwargs.get("encrypt_data") else None,
            **{k: kwargs[k] for k in EXPORT_KWARGS + STREAMING_KWARGS if k in kwargs},
        )
    return qm


def espdl_quantize_onnx(
    onnx_import_file: str | Path,
    espdl_export_file: str | Path,
    calib_dataloader: Iterable[Any],
    calib_steps: int,
    input_shape: Any,
    inputs: Any = None,
    target: str = "esp32p4",
    num_of_bits: int = 8,
    collate_fn: Callable | None = None,
    setting: QuantizationSetting | None = None,
    device: str = "cpu",
    error_report: bool = True,
    skip_export: bool = False,
    export_config: bool = True,
    export_test_values: bool = False,
    test_output_names: list[str] | None = None,
    verbose: int = 0,
    overwrite: bool = False,
    **kwargs: Any,
) -> QuantizedModel:
    """Quantize an ONNX model and export ``.espdl`` (+ ``.info``/``.json``), like ESP-PPQ's function."""
    return _run_pipeline(
        str(onnx_import_file),
        espdl_export_file,
        calib_dataloader,
        calib_steps,
        input_shape,
        inputs,
        target,
        num_of_bits,
        collate_fn,
        setting,
        device,
        error_report,
        skip_export,
        export_config,
        export_test_values,
        test_output_names,
        kwargs,
        overwrite,
        [onnx_import_file],
    )


def espdl_quantize_torch(
    model: Any,
    espdl_export_file: str | Path,
    calib_dataloader: Iterable[Any],
    calib_steps: int,
    input_shape: Any,
    inputs: Any = None,
    target: str = "esp32p4",
    num_of_bits: int = 8,
    collate_fn: Callable | None = None,
    setting: QuantizationSetting | None = None,
    device: str = "cpu",
    error_report: bool = True,
    test_output_names: list[str] | None = None,
    skip_export: bool = False,
    export_config: bool = True,
    verbose: int = 0,
    export_test_values: bool = False,
    opset_version: int = 18,
    overwrite: bool = False,
    **kwargs: Any,
) -> QuantizedModel:
    """Export a torch model to ``<stem>.onnx`` beside the ``.espdl`` (as ESP-PPQ does), then quantize it."""
    from espq.frontends import export_torch, load_onnx

    _check_kwargs(kwargs)
    proto = load_onnx(export_torch(model, input_shape=input_shape, inputs=inputs, opset=opset_version))
    onnx_path = _write_onnx(proto, espdl_export_file, skip_export, export_config, overwrite)
    return _run_pipeline(
        proto,
        espdl_export_file,
        calib_dataloader,
        calib_steps,
        input_shape,
        inputs,
        target,
        num_of_bits,
        collate_fn,
        setting,
        device,
        error_report,
        skip_export,
        export_config,
        export_test_values,
        test_output_names,
        kwargs,
        overwrite,
        [onnx_path],
    )


def espdl_quantize_tf(
    model: Any,
    espdl_export_file: str | Path,
    calib_dataloader: Iterable[Any],
    calib_steps: int,
    input_shape: Any = None,
    inputs: Any = None,
    target: str = "esp32p4",
    num_of_bits: int = 8,
    collate_fn: Callable | None = None,
    setting: QuantizationSetting | None = None,
    device: str = "cpu",
    error_report: bool = True,
    test_output_names: list[str] | None = None,
    skip_export: bool = False,
    export_config: bool = True,
    verbose: int = 0,
    export_test_values: bool = False,
    overwrite: bool = False,
    **kwargs: Any,
) -> QuantizedModel:
    """The same for a Keras model / ``.keras`` file / SavedModel (extra ``[tf]``); writes ``<stem>.onnx``."""
    from espq.frontends import load_onnx, load_tf

    _check_kwargs(kwargs)
    proto = load_onnx(load_tf(model, input_shape=input_shape))
    onnx_path = _write_onnx(proto, espdl_export_file, skip_export, export_config, overwrite)
    return _run_pipeline(
        proto,
        espdl_export_file,
        calib_dataloader,
        calib_steps,
        None,
        inputs,
        target,
        num_of_bits,
        collate_fn,
        setting,
        device,
        error_report,
        skip_export,
        export_config,
        export_test_values,
        test_output_names,
        kwargs,
        overwrite,
        [onnx_path],
    )

"""The ``espq`` command line (typer). Thin: every command calls the library.

Exit codes: 0 success, 1 a check found differences/mismatches, 2 bad input or usage (one-line message), 3
an internal error (one line; ``espq --debug ...`` shows the traceback).
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import typer
from typer.core import TyperGroup

from espq.cli_args import expand_multi_value_options, parse_input_shapes
from espq.errors import EspqError


class _Commands(TyperGroup):
    """espq's command group: accepts ``--size 224 224``-style options as the README writes them."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, expand_multi_value_options(args))


app = typer.Typer(
    cls=_Commands, add_completion=False, no_args_is_help=True, help="Quantize models for Espressif ESP-DL."
)
_state = {"debug": False}


@app.callback()
def _main(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors.")) -> None:
    _state["debug"] = debug


#: exceptions that are click's own control flow (exit, abort, usage errors): passed through unchanged.
#: (recent typer releases vendor click as ``typer._click``: click is not imported by name.)
_CLI_SIGNALS = (
    typer.Exit,
    typer.Abort,
    *(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"),
)


def _handle_errors(fn):
    """EspqError → one-line message on stderr and exit code 2; any other exception → one line and exit
    code 3 (an internal error); ``--debug`` shows the traceback instead."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except EspqError as exc:
            if _state["debug"]:
                raise
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        except _CLI_SIGNALS:
            raise
        except Exception as exc:  # a bug in espq (or a library): one line, exit 3, never a bare traceback
            if _state["debug"]:
                raise
            typer.echo(
                f"internal error: {type(exc).__name__}: {exc}; rerun with espq --debug ... for the traceback "
                "and report it",
                err=True,
            )
            raise typer.Exit(3) from None

    return wrapper


def _shape(values: list[int] | None) -> list[int] | None:
    return list(values) if values else None


INPUT_SHAPE_HELP = "Input shape, e.g. --input-shape 1 3 224 224 (once per input of a multi-input model)."


def _calibration(
    calib: Path,
    batch_size: int,
    size: list[int] | None,
    mean: list[float] | None,
    std: list[float] | None,
    scale: float,
    limit: int | None,
    model: Path | None = None,
    input_shapes: list | None = None,
):
    from espq.data import load_calibration, model_image_channels

    return load_calibration(
        calib,
        batch_size=batch_size,
        size=size,
        mean=mean or (0.0,),
        std=std or (1.0,),
        scale=scale,
        limit=limit,
        channels=model_image_channels(model, input_shapes) if model and calib.is_dir() else 3,
    )


CALIB_HELP = "Calibration data: an image folder, a .npy (samples on axis 0) or a .npz (one array per input)."
SIZE_HELP = "Image height and width for image folders, e.g. --size 224 224."
FORCE_HELP = "Replace existing output files espq did not write (never an input file)."
ENCRYPT_HELP = "AES-encrypt the .espdl; a new key goes to <stem>.key and <stem>_key.h (mode 0600)."
KEY_FILE_HELP = "AES key file of an encrypted .espdl (the <stem>.key written at export)."
MODEL_HELP = "The model of a package to use (its name, e.g. foo.espdl, or index)."


def _export_key(encrypt: bool, key_file: Path | None) -> bytes | str | None:
    """``--encrypt [--key-file F]`` as ``export(key=...)``."""
    from espq.errors import ConfigError

    if key_file is not None and not encrypt:
        raise ConfigError("--key-file needs --encrypt (to encrypt the export with that key)")
    return None if not encrypt else "auto" if key_file is None else _read_key(key_file)


def _read_key(key_file: Path | None) -> bytes | None:
    from espq.espdl.encrypt import read_key_file

    return None if key_file is None else read_key_file(key_file)


def _finetune_steps(tqt: bool, tqt_steps: int, tqt_block: int, reconstruct: bool, rec_steps: int) -> dict:
    """``--tqt`` / ``--reconstruct`` as ``QuantSetting.steps`` overrides (on the GPU when torch has one)."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    steps: dict = {}
    if tqt:
        steps["tqt"] = {"steps": tqt_steps, "block_size": tqt_block, "collecting_device": device}
    if reconstruct:
        steps["blockwise_reconstruction"] = {"steps": rec_steps, "collecting_device": device}
    return steps


@app.command()
@_handle_errors
def quantize(
    model: Path = typer.Argument(..., help="ONNX model (or Keras .keras / SavedModel folder)."),
    calib: Path = typer.Option(..., "--calib", help=CALIB_HELP),
    target: str = typer.Option("esp32p4", "--target", help="esp32p4, esp32s3, esp32, esp32c3, ... or c."),
    bits: int = typer.Option(8, "--bits", help="8 or 16."),
    steps: int = typer.Option(32, "--steps", help="Calibration batches."),
    batch_size: int = typer.Option(32, "--batch-size"),
    size: list[int] = typer.Option(None, "--size", help=SIZE_HELP),
    mean: list[float] = typer.Option(
        None, "--mean", help="Per-channel mean after --scale, e.g. --mean 0.485 ..."
    ),
    std: list[float] = typer.Option(None, "--std", help="Per-channel std after --scale."),
    scale: float = typer.Option(
        1 / 255, "--scale", help="Pixel scale applied before mean/std (1 for 0-255)."
    ),
    input_shape: list[str] = typer.Option(None, "--input-shape", help=INPUT_SHAPE_HELP),
    int16: list[str] = typer.Option(None, "--int16", help="Run this node at int16 (repeatable)."),
    recipe: str = typer.Option("espdl", "--recipe", help="espdl (ESP-PPQ defaults) or best."),
    equalize: bool = typer.Option(False, "--equalize", help="Layerwise equalization before calibration."),
    auto_int16: float = typer.Option(
        None,
        "--auto-int16",
        help="Promote layers to int16 until the output "
        "noise-to-signal ratio is below this value (e.g. 0.01).",
    ),
    test_values: bool = typer.Option(
        True, "--test-values/--no-test-values", help="Embed test inputs/outputs."
    ),
    report_html: Path = typer.Option(
        None, "--report-html", help="Write the error-analysis HTML report here."
    ),
    out: Path = typer.Option(
        None, "--out", help="Output .espdl (default: <model stem>_<target>_s<bits>.espdl)."
    ),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
    encrypt: bool = typer.Option(False, "--encrypt", help=ENCRYPT_HELP),
    key_file: Path = typer.Option(None, "--key-file", help="With --encrypt: use this key (hex or 16 bytes)."),
    streaming_input_shape: list[str] = typer.Option(
        None,
        "--streaming-input-shape",
        help="Write a streaming model (auto_streaming): the chunk shape, e.g. 1 16 3 for [1, 16, T] inputs.",
    ),
    tqt: bool = typer.Option(
        False, "--tqt", help="TQT: train weights and exponents block by block on the calibration data."
    ),
    tqt_steps: int = typer.Option(500, "--tqt-steps", help="TQT Adam steps per block (ESP-PPQ's 500)."),
    tqt_block: int = typer.Option(4, "--tqt-block", help="TQT computing ops per block (ESP-PPQ's 4)."),
    reconstruct: bool = typer.Option(
        False, "--reconstruct", help="Blockwise reconstruction: learned weight rounding per block (AdaRound)."
    ),
    reconstruct_steps: int = typer.Option(
        5000, "--reconstruct-steps", help="Reconstruction steps per block (ESP-PPQ's 5000)."
    ),
) -> None:
    """Quantize MODEL for a chip and write .espdl + .info + .json.

    Fine-tuning (--tqt, --reconstruct) prints one line per block on stderr: its ops, the block-output
    MSE before -> after, and whether it was kept or rolled back.

    Example: espq quantize resnet20.onnx --calib calib_images/ --size 32 32 --mean 0.485 0.456 0.406
    --std 0.229 0.224 0.225 --target esp32s3 | espq quantize resnet20.onnx --calib calib.npy --target
    esp32s3 --tqt --tqt-steps 100 --tqt-block 2 | espq quantize resnet20.onnx --calib calib.npy --reconstruct
    --reconstruct-steps 500
    """
    import espq
    from espq.quant.model import export_outputs
    from espq.utils import check_outputs

    if auto_int16 is not None and not (math.isfinite(auto_int16) and auto_int16 >= 0):
        from espq.errors import ConfigError

        raise ConfigError(
            f"--auto-int16 {auto_int16}: the noise-to-signal target must be a finite number >= 0 "
            "(e.g. --auto-int16 0.01)"
        )
    path = out or Path(f"{Path(model).stem}_{target}_s{bits}.espdl")
    outputs = export_outputs(path) + ([report_html] if report_html is not None else [])
    check_outputs(outputs, [model, calib], force)
    data = _calibration(
        calib, batch_size, _shape(size), mean, std, scale, None, model, parse_input_shapes(input_shape)
    )
    setting = espq.QuantSetting(precision={n: 16 for n in int16 or []}, recipe=recipe)
    if equalize:
        setting.equalization = True
    setting.steps.update(_finetune_steps(tqt, tqt_steps, tqt_block, reconstruct, reconstruct_steps))
    if auto_int16 is not None:
        qm = espq.auto_mixed_precision(
            model,
            data,
            target=target,
            max_error=auto_int16,
            setting=setting,
            calib_steps=steps,
            input_shape=parse_input_shapes(input_shape),
        )
        typer.echo(qm.amp_report.summary())
    else:
        qm = espq.quantize(
            model,
            data,
            target=target,
            bits=bits,
            calib_steps=steps,
            setting=setting,
            input_shape=parse_input_shapes(input_shape),
        )
    if getattr(qm, "quality", None) is not None:  # the quality gate's findings (espq.quant.quality)
        typer.echo(qm.quality.summary())
    qm.source_files = [model, calib]
    chunk = parse_input_shapes(streaming_input_shape, "--streaming-input-shape")
    extra = {}
    if report_html is not None:  # analysed first: the HTML is written in the same output set
        from espq.analysis.html import render_html

        report = qm.analyse(data, steps=min(8, len(data)))
        report.print()
        extra[report_html] = render_html(report)
    qm.export(
        path,
        export_test_values=test_values,
        overwrite=force,
        key=_export_key(encrypt, key_file),
        streaming_input_shape=chunk,
        auto_streaming=chunk is not None,
        extra_files=extra,
    )
    typer.echo(f"wrote {path}, {path.with_suffix('.info')}, {path.with_suffix('.json')}")
    if encrypt and key_file is None:
        stem = path.with_suffix("")
        typer.echo(f"wrote the AES key to {stem}.key and {stem}_key.h (keep them secret)")
    if report_html is not None:
        typer.echo(f"wrote {report_html}")


@app.command()
@_handle_errors
def check(
    model: Path = typer.Argument(..., help="ONNX model."),
    target: str = typer.Option("esp32p4", "--target"),
    bits: int = typer.Option(8, "--bits"),
    input_shape: list[str] = typer.Option(None, "--input-shape", help=INPUT_SHAPE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    calib: Path = typer.Option(
        None, "--calib", help=CALIB_HELP + " With it, also quantize and run the quality gate."
    ),
    steps: int = typer.Option(None, "--steps", help="Calibration batches (default: all)."),
    batch_size: int = typer.Option(32, "--batch-size"),
    size: list[int] = typer.Option(None, "--size", help=SIZE_HELP),
    mean: list[float] = typer.Option(None, "--mean"),
    std: list[float] = typer.Option(None, "--std"),
    scale: float = typer.Option(1 / 255, "--scale"),
) -> None:
    """Check that every node of MODEL can run on the target (before any calibration); with --calib also
    quantize it and print the quality gate's findings (one line each: tensor/op, damage, fix). Exit 1
    when a node cannot run or the gate found damage.

    Example: espq check yolov8n.onnx --target esp32s3 --input-shape 1 3 320 320 --calib imgs/ --size 320 320
    """
    import warnings

    import espq
    from espq.quant.quality import QualityWarning

    shapes = parse_input_shapes(input_shape)
    graph = espq.load(model, input_shape=shapes)
    report = espq.check_model(graph, target, bits, strict=False)
    gate = None
    if calib is not None and report.ok:
        data = _calibration(calib, batch_size, _shape(size), mean, std, scale, None, model, shapes)
        with warnings.catch_warnings():  # the findings are printed below
            warnings.simplefilter("ignore", QualityWarning)
            qm = espq.quantize(graph, data, target=target, bits=bits, calib_steps=steps, progress=False)
        gate = qm.quality
    if as_json:
        out = report.to_dict()
        if gate is not None:
            out["quality"] = gate.to_dict()
        typer.echo(json.dumps(out, indent=1))
    else:
        typer.echo(report.summary())
        if gate is not None:
            typer.echo(gate.summary())
    if not report.ok:
        typer.echo(report.unsupported_message(), err=True)
        raise typer.Exit(1)
    if gate is not None and not gate.ok:
        raise typer.Exit(1)


@app.command()
@_handle_errors
def inspect(
    file: Path = typer.Argument(..., help=".espdl file."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    key_file: Path = typer.Option(None, "--key-file", help=KEY_FILE_HELP),
    model: str = typer.Option(None, "--model", help=MODEL_HELP),
) -> None:
    """Summarise a .espdl file: target, nodes, exponents, parameter bytes, memory, test values.
    A package (PDL1/2/3) lists its models; --model NAME inspects one.

    Example: espq inspect model.espdl --json    |    espq inspect models.espdl --model foo.espdl
    """
    from espq.espdl.pack import format_package_summary, load_model, package_summary

    summary = package_summary(file) if model is None else None
    if summary is not None:
        typer.echo(json.dumps(summary, indent=2) if as_json else format_package_summary(summary, str(file)))
        return
    if key_file is not None or model is not None:
        from espq.espdl.inspect import format_inspect, inspect_model
        from espq.espdl.validate import require_valid

        loaded = load_model(file, _read_key(key_file), model)
        require_valid(loaded, what=f"'{file}'" if model is None else f"'{file}' [model '{model}']")
        d = inspect_model(loaded)
        d["file"] = str(file) if model is None else f"{file} [model '{model}']"
        typer.echo(json.dumps(d, indent=2) if as_json else format_inspect(d))
        return
    from espq.espdl.inspect import inspect_cli
    from espq.utils import require_regular_file

    raise typer.Exit(inspect_cli(str(require_regular_file(file)), as_json))


@app.command()
@_handle_errors
def diff(a: Path = typer.Argument(...), b: Path = typer.Argument(...)) -> None:
    """Compare two .espdl files (nodes, attributes, exponents, weight codes). Exit 1 if they differ.

    Example: espq diff ours.espdl reference.espdl
    """
    from espq.espdl.diff import diff_cli
    from espq.utils import require_regular_file

    raise typer.Exit(diff_cli(str(require_regular_file(a)), str(require_regular_file(b))))


@app.command()
@_handle_errors
def run(
    file: Path = typer.Argument(..., help=".espdl file."),
    input: list[str] = typer.Option(None, "--input", help="x.npy or name=x.npy (float, ONNX layout)."),
    output: Path = typer.Option(None, "--output", help="Write outputs to this .npz."),
    target: str = typer.Option(None, "--target", help="Needed when the file names no target."),
    check: bool = typer.Option(False, "--check", help="Run the embedded test values and compare."),
    key_file: Path = typer.Option(None, "--key-file", help=KEY_FILE_HELP),
    model: str = typer.Option(None, "--model", help=MODEL_HELP),
) -> None:
    """Run a .espdl bit-exactly as ESP-DL does on the chip (one model of a package with --model).

    Example: espq run model.espdl --check    |    espq run model.espdl --input x.npy --output y.npz
    """
    from espq.espdl.pack import load_model, package_summary
    from espq.sim.integer.cli import run_cli

    loaded = None
    if key_file is not None or model is not None or package_summary(file) is not None:
        loaded = load_model(file, _read_key(key_file), model)

    raise typer.Exit(
        run_cli(str(file), list(input or []), None if output is None else str(output), target, check, loaded)
    )


@app.command()
@_handle_errors
def analyse(
    model: Path = typer.Argument(..., help="ONNX model."),
    calib: Path = typer.Option(..., "--calib", help=CALIB_HELP),
    target: str = typer.Option("esp32p4", "--target"),
    bits: int = typer.Option(8, "--bits"),
    steps: int = typer.Option(8, "--steps", help="Analysis batches (ESP-PPQ's default 8)."),
    batch_size: int = typer.Option(32, "--batch-size"),
    size: list[int] = typer.Option(None, "--size", help=SIZE_HELP),
    mean: list[float] = typer.Option(None, "--mean"),
    std: list[float] = typer.Option(None, "--std"),
    scale: float = typer.Option(1 / 255, "--scale"),
    input_shape: list[str] = typer.Option(None, "--input-shape", help=INPUT_SHAPE_HELP),
    html: Path = typer.Option(None, "--html", help="Write the HTML report here."),
    json_out: Path = typer.Option(None, "--json", help="Write report.json here."),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
) -> None:
    """Quantize and print graphwise / layerwise / isolated error tables.

    Example: espq analyse mobilenetv2.onnx --calib imgs/ --size 224 224 --scale 1 --mean 123.675 116.28
    103.53 --std 58.395 57.12 57.375 --html report.html
    """
    import warnings

    import espq
    from espq.quant.quality import QualityWarning
    from espq.utils import check_outputs

    check_outputs([p for p in (html, json_out) if p is not None], [model, calib], force)
    data = _calibration(
        calib, batch_size, _shape(size), mean, std, scale, None, model, parse_input_shapes(input_shape)
    )
    with warnings.catch_warnings():  # the report prints the quality gate's findings
        warnings.simplefilter("ignore", QualityWarning)
        qm = espq.quantize(model, data, target=target, bits=bits, input_shape=parse_input_shapes(input_shape))
    report = qm.analyse(data, steps=steps)
    report.print()
    if html is not None:
        report.to_html(html)
    if json_out is not None:
        report.to_json(json_out)


@app.command()
@_handle_errors
def autoquant(
    model: Path = typer.Argument(..., help="ONNX model."),
    calib: Path = typer.Option(..., "--calib", help=CALIB_HELP),
    target: str = typer.Option("esp32p4", "--target"),
    bits: int = typer.Option(8, "--bits"),
    steps: int = typer.Option(None, "--steps", help="Calibration batches (default: all)."),
    batch_size: int = typer.Option(32, "--batch-size"),
    size: list[int] = typer.Option(None, "--size", help=SIZE_HELP),
    mean: list[float] = typer.Option(None, "--mean"),
    std: list[float] = typer.Option(None, "--std"),
    scale: float = typer.Option(1 / 255, "--scale"),
    max_latency_ms: float = typer.Option(None, "--max-latency-ms", help="Predicted on-chip latency limit."),
    max_size_bytes: int = typer.Option(None, "--max-size-bytes", help="Parameter bytes limit."),
    max_evaluations: int = typer.Option(4, "--max-evaluations", help="Finalists run on all batches."),
    workers: int = typer.Option(1, "--workers", help="Local worker processes (one torch thread each)."),
    backend: str = typer.Option("process", "--backend", help="process, serial or ray."),
    seed: int = typer.Option(0, "--seed", help="Chooses the proxy's calibration batches."),
    run_dir: Path = typer.Option(Path("espq-autoquant"), "--run-dir", help="Search records and runs."),
    resume: bool = typer.Option(False, "--resume", help="Skip the runs already recorded in --run-dir."),
    out: Path = typer.Option(None, "--out", help="Export the chosen model here (+ .info, .json)."),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
) -> None:
    """Search quantization settings (observer, equalization, exponent search, bias correction, int16
    layers) for the lowest output error within the budgets; writes <run-dir>/report.html.

    Example: espq autoquant resnet20.onnx --calib calib_images/ --size 32 32 --target esp32s3 --workers 2
    --out resnet20.espdl
    """
    import espq
    from espq.quant.model import export_outputs
    from espq.utils import check_outputs

    out_path = out or model.with_suffix(".espdl")
    check_outputs(export_outputs(out_path), [model, calib], force)
    data = _calibration(calib, batch_size, _shape(size), mean, std, scale, None, model)
    result = espq.autoquant(
        model,
        data,
        target,
        max_latency_ms=max_latency_ms,
        max_size_bytes=max_size_bytes,
        max_evaluations=max_evaluations,
        workers=workers,
        backend=backend,
        seed=seed,
        bits=bits,
        calib_steps=steps,
        run_dir=run_dir,
        resume=resume,
        log=typer.echo,
    )
    result.model.source_files = [model, calib]
    result.export(out_path, overwrite=force)
    best = result.best
    typer.echo(
        f"chosen: {best['label']} (output NSR {best['nsr']:.3e}, {best['param_bytes']} parameter bytes, "
        f"{len(best['int16_layers'])} int16 layer(s)); {result.runs} run(s) in {result.seconds:.1f} s"
    )
    typer.echo(f"wrote {out_path} and {run_dir / 'report.html'}")


@app.command()
@_handle_errors
def pack(
    files: list[Path] = typer.Argument(..., help=".espdl files (or packages), or one folder of them."),
    out: Path = typer.Option(..., "-o", "--out", help="Output package, e.g. models.espdl."),
    fmt: str = typer.Option("pdl3", "--format", help="pdl3 (default; EDL2 models), pdl2, or pdl1 (EDL1)."),
    version: str = typer.Option("v1.0", "--package-version", help="PDL3 package version (<= 15 chars)."),
    keep_order: bool = typer.Option(
        False, "--keep-order", help="Models in the order given (default: sorted by path, as ESP-DL's tool)."
    ),
) -> None:
    """Pack .espdl models into one package, byte for byte as ESP-DL's pack_espdl_models.py does (names =
    file names, models sorted by path unless --keep-order; a package input keeps its models' order).

    Example: espq pack a.espdl b.espdl -o models.espdl --format pdl3
    """
    from espq.espdl.pack import pack as pack_files

    pack_files(files, out, fmt, version, sort=not keep_order)
    typer.echo(f"wrote {out} ({len(files)} input file(s))")


@app.command()
@_handle_errors
def demo(out: Path = typer.Option(Path("espq-demo"), "--out", help="Output folder.")) -> None:
    """Train a small CNN on sklearn's digits, quantize for esp32p4 and esp32s3, report, export.

    Example: espq demo --out espq-demo
    """
    from espq.demo import run_demo

    run_demo(out, echo=typer.echo)


def main() -> None:
    """Console entry point."""
    app()


if __name__ == "__main__":
    main()

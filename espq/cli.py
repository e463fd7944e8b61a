"""The ``espq`` command line (typer). Thin: every command calls the library.

Exit codes: 0 success, 1 a check found differences/mismatches, 2 bad input or usage (message, no
traceback unless ``--debug``).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import typer

from espq.errors import EspqError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Quantize models for Espressif ESP-DL.")
_state = {"debug": False}


@app.callback()
def _main(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors.")) -> None:
    _state["debug"] = debug


def _handle_errors(fn):
    """EspqError → one-line message on stderr and exit code 2 (full traceback with --debug)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except EspqError as exc:
            if _state["debug"]:
                raise
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None

    return wrapper


def _shape(values: list[int] | None) -> list[int] | None:
    return list(values) if values else None


def _calibration(
    calib: Path,
    batch_size: int,
    size: list[int] | None,
    mean: list[float] | None,
    std: list[float] | None,
    scale: float,
    limit: int | None,
):
    from espq.data import load_calibration

    return load_calibration(
        calib,
        batch_size=batch_size,
        size=size,
        mean=mean or (0.0, 0.0, 0.0),
        std=std or (1.0, 1.0, 1.0),
        scale=scale,
        limit=limit,
    )


CALIB_HELP = "Calibration data: an image folder, a .npy (samples on axis 0) or a .npz (one array per input)."
SIZE_HELP = "Image height and width for image folders, e.g. --size 224 224."


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
    input_shape: list[int] = typer.Option(
        None, "--input-shape", help="Static input shape for dynamic models."
    ),
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
) -> None:
    """Quantize MODEL for a chip and write .espdl + .info + .json.

    Example: espq quantize resnet20.onnx --calib calib_images/ --size 32 32 --mean 0.485 0.456 0.406
    --std 0.229 0.224 0.225 --target esp32s3
    """
    import espq

    data = _calibration(calib, batch_size, _shape(size), mean, std, scale, None)
    setting = espq.QuantSetting(precision={n: 16 for n in int16 or []}, recipe=recipe)
    if equalize:
        setting.equalization = True
    if auto_int16 is not None:
        qm = espq.auto_mixed_precision(
            model,
            data,
            target=target,
            max_error=auto_int16,
            setting=setting,
            calib_steps=steps,
            input_shape=_shape(input_shape),
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
            input_shape=_shape(input_shape),
        )
    path = out or Path(f"{Path(model).stem}_{target}_s{bits}.espdl")
    qm.export(path, export_test_values=test_values)
    typer.echo(f"wrote {path}, {path.with_suffix('.info')}, {path.with_suffix('.json')}")
    if report_html is not None:
        report = qm.analyse(data, steps=min(8, len(data)))
        report.print()
        report.to_html(report_html)
        typer.echo(f"wrote {report_html}")


@app.command()
@_handle_errors
def check(
    model: Path = typer.Argument(..., help="ONNX model."),
    target: str = typer.Option("esp32p4", "--target"),
    bits: int = typer.Option(8, "--bits"),
    input_shape: list[int] = typer.Option(None, "--input-shape"),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Check that every node of MODEL can run on the target (before any calibration).

    Example: espq check yolov8n.onnx --target esp32s3 --input-shape 1 3 320 320
    """
    import espq

    graph = espq.load(model, input_shape=_shape(input_shape))
    report = espq.check_model(graph, target, bits, strict=False)
    typer.echo(json.dumps(report.to_dict(), indent=1) if as_json else report.summary())
    if not report.ok:
        typer.echo(report.unsupported_message(), err=True)
        raise typer.Exit(1)


@app.command()
@_handle_errors
def inspect(
    file: Path = typer.Argument(..., help=".espdl file."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Summarise a .espdl file: target, nodes, exponents, parameter bytes, memory, test values.

    Example: espq inspect model.espdl --json
    """
    from espq.espdl.inspect import inspect_cli

    raise typer.Exit(inspect_cli(str(file), as_json))


@app.command()
@_handle_errors
def diff(a: Path = typer.Argument(...), b: Path = typer.Argument(...)) -> None:
    """Compare two .espdl files (nodes, attributes, exponents, weight codes). Exit 1 if they differ.

    Example: espq diff ours.espdl reference.espdl
    """
    from espq.espdl.inspect import diff_cli

    raise typer.Exit(diff_cli(str(a), str(b)))


@app.command()
@_handle_errors
def run(
    file: Path = typer.Argument(..., help=".espdl file."),
    input: list[str] = typer.Option(None, "--input", help="x.npy or name=x.npy (float, ONNX layout)."),
    output: Path = typer.Option(None, "--output", help="Write outputs to this .npz."),
    target: str = typer.Option(None, "--target", help="Needed when the file names no target."),
    check: bool = typer.Option(False, "--check", help="Run the embedded test values and compare."),
) -> None:
    """Run a .espdl bit-exactly as ESP-DL does on the chip.

    Example: espq run model.espdl --check    |    espq run model.espdl --input x.npy --output y.npz
    """
    from espq.sim.integer.check import run_cli

    raise typer.Exit(
        run_cli(str(file), list(input or []), None if output is None else str(output), target, check)
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
    input_shape: list[int] = typer.Option(None, "--input-shape"),
    html: Path = typer.Option(None, "--html", help="Write the HTML report here."),
    json_out: Path = typer.Option(None, "--json", help="Write report.json here."),
) -> None:
    """Quantize and print graphwise / layerwise / isolated error tables.

    Example: espq analyse mobilenetv2.onnx --calib imgs/ --size 224 224 --scale 1 --mean 123.675 116.28
    103.53 --std 58.395 57.12 57.375 --html report.html
    """
    import espq

    data = _calibration(calib, batch_size, _shape(size), mean, std, scale, None)
    qm = espq.quantize(model, data, target=target, bits=bits, input_shape=_shape(input_shape))
    report = qm.analyse(data, steps=steps)
    report.print()
    if html is not None:
        report.to_html(html)
    if json_out is not None:
        report.to_json(json_out)


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

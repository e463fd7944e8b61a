"""The README's option forms (``--size 224 224``, ``--input-shape 1 3 8 8``) and the CLI's exit codes."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from espq.cli import app
from espq.cli_args import expand_multi_value_options, parse_input_shapes
from espq.errors import ConfigError


def test_numeric_options_expand_to_the_repeated_form():
    args = ["quantize", "m.onnx", "--size", "224", "224", "--mean", "0.485", "-0.5", "1e-3", "--calib", "d"]
    assert expand_multi_value_options(args) == [
        "quantize", "m.onnx", "--size", "224", "--size", "224",
        "--mean", "0.485", "--mean", "-0.5", "--mean", "1e-3", "--calib", "d",
    ]  # fmt: skip


def test_repeated_form_and_separator_unchanged():
    args = ["--size", "8", "--size", "8", "--", "--size", "1", "2"]
    assert expand_multi_value_options(args) == args
    assert expand_multi_value_options(["--size=8"]) == ["--size", "8"]
    assert expand_multi_value_options(["--size"]) == ["--size"]  # click reports the missing value


def test_input_shape_groups_stay_together():
    args = ["--input-shape", "1", "3", "8", "8", "--input-shape", "1", "5", "model.onnx"]
    expanded = expand_multi_value_options(args)
    assert expanded == ["--input-shape", "1,3,8,8", "--input-shape", "1,5", "model.onnx"]
    assert parse_input_shapes(expanded[1::2][:2]) == [[1, 3, 8, 8], [1, 5]]
    assert parse_input_shapes(["1,3,8,8"]) == [1, 3, 8, 8]
    assert parse_input_shapes(["1", "3", "8", "8"]) == [1, 3, 8, 8]  # the old repeated-flag form
    assert parse_input_shapes(None) is None


@pytest.mark.parametrize("bad", [["1,x"], ["0,3"], ["1,-3"]])
def test_bad_input_shapes_are_config_errors(bad):
    with pytest.raises(ConfigError, match="--input-shape"):
        parse_input_shapes(bad)


def test_check_accepts_the_readme_form_and_bad_values_exit_2(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    g = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["y"])],
        "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 4]) for n in ("a", "b")],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    path = tmp_path / "two.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    runner = CliRunner()
    ok = runner.invoke(app, ["check", str(path), "--input-shape", "1", "4", "--input-shape", "1", "4"])
    assert ok.exit_code == 0, ok.output
    assert "1 quantized" in ok.output
    one = runner.invoke(app, ["check", str(path), "--input-shape", "1", "4"])
    assert one.exit_code == 2 and "2 input(s)" in one.output
    bad = runner.invoke(app, ["check", str(path), "--input-shape", "x"])
    assert bad.exit_code == 2 and "takes integers" in bad.output


def test_an_internal_error_exits_3_with_one_line(monkeypatch, tmp_path):
    import espq

    def boom(*args, **kwargs):
        raise KeyError("internal")

    monkeypatch.setattr(espq, "load", boom)
    result = CliRunner().invoke(app, ["check", str(tmp_path / "m.onnx")])
    assert result.exit_code == 3
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("internal error: KeyError") and "--debug" in lines[0]


def _examples() -> list[str]:
    """Every ``Example:`` command line of the CLI's --help texts (continuation lines joined)."""
    import inspect as pyinspect

    import typer.main

    out = []
    for name, cmd in typer.main.get_command(app).commands.items():
        doc = pyinspect.getdoc(cmd.callback) or ""
        lines = doc.splitlines()
        for i, line in enumerate(lines):
            if line.startswith("Example:"):
                text = line[len("Example:") :]
                for cont in lines[i + 1 :]:
                    if not cont.strip() or cont.startswith(("Example", "    ")):
                        break
                    text += " " + cont
                out += [c.strip() for c in text.split("|") if c.strip().startswith("espq ")]
        assert any(f"espq {name}" in c for c in out), f"--help of {name} has no example"
    return out


def test_every_help_example_parses_as_written():
    import shlex

    import typer.main

    group = typer.main.get_command(app)
    examples = _examples()
    assert len(examples) >= 9
    for example in examples:
        words = shlex.split(example)[1:]
        cmd = group.commands[words[0]]
        ctx = cmd.make_context(words[0], expand_multi_value_options(words[1:]))  # raises on a usage error
        assert ctx.params, example
        if words[0] == "analyse":  # the continuation line is part of the example
            assert list(ctx.params["mean"]) == [123.675, 116.28, 103.53]
            assert list(ctx.params["std"]) == [58.395, 57.12, 57.375]

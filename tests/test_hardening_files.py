"""Files are checked before they are trusted, declared sizes are limited (issue 14 findings 4, 5, minor).

Every case asserts the error class and its one-line message, or the numbers a silent failure would get
wrong; shared zoo files are used by path and skipped when absent.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent / "sim"))
from espdl_builders import init, model, node, vi  # noqa: E402

import espq  # noqa: E402
from espq.cli import app  # noqa: E402
from espq.errors import ConfigError, EspdlFormatError, InvalidFileError, ShapeError  # noqa: E402
from espq.espdl import read, write  # noqa: E402
from espq.sim.integer import IntegerRunner, check_test_values, run_espdl  # noqa: E402

ZOO = Path(__file__).resolve().parents[1].parent / "shared" / "espdl-zoo"
OPTESTS = Path(__file__).resolve().parents[1].parent / "shared" / "espdl-optests"
I8 = np.int8


def _cli(*args) -> tuple[int, list[str]]:
    r = CliRunner().invoke(app, [str(a) for a in args])
    return r.exit_code, r.output.strip().splitlines()


def _identity_model(shape: list[int]):
    return model([node("Identity", ["x"], ["y"])], [vi("x", I8, shape)], [vi("y", I8, shape)])


# ---------------------------------------------------------------- finding 4: files are validated on load
def test_runner_refuses_a_file_with_an_undefined_output(tmp_path: Path) -> None:
    m = _identity_model([1, 4])
    m.graph.outputs[0].name = "nowhere"
    m.graph.value_info.append(vi("nowhere", I8, [1, 4]))
    path = tmp_path / "bad.espdl"
    write(m, path)
    for call in (lambda: IntegerRunner(path), lambda: run_espdl(path, np.zeros((1, 4), np.float32))):
        with pytest.raises(InvalidFileError, match=r"graph output 'nowhere' is not produced by any node"):
            call()
    code, lines = _cli("run", path, "--input", _npy(tmp_path, np.zeros((1, 4), np.float32)))
    assert code == 2 and len(lines) == 1 and "is not a valid ESP-DL model" in lines[0], lines
    code, lines = _cli("inspect", path)
    assert code == 2 and lines == [lines[0]] and "graph output 'nowhere'" in lines[0], lines


def _npy(tmp_path: Path, x: np.ndarray) -> Path:
    p = tmp_path / "x.npy"
    np.save(p, x)
    return p


def test_runner_refuses_a_declared_activation_beyond_the_limit() -> None:
    m = _identity_model([1, 4])
    m.graph.value_info.append(vi("big", I8, [1, 3, 8, 8_000_000]))
    match = r"activation 'big' declares a tensor of shape \[1, 3, 8, 8000000\]"
    with pytest.raises(InvalidFileError, match=match):
        IntegerRunner(m)


def test_nan_input_is_an_error() -> None:
    with pytest.raises(espq.errors.InputDataError, match=r"input 'x' holds 1 NaN/Inf value"):
        run_espdl(_identity_model([1, 4]), np.array([[0, 1, np.nan, 2]], np.float32))


def test_kernel_error_on_an_inconsistent_file_is_one_clean_error() -> None:
    """Gemm weight for 3 input features on a 4-feature input: numpy's reshape error, as a format error."""
    g = node("Gemm", ["x", "w"], ["y"])
    w = init("w", np.ones((1, 1, 3, 2), I8), I8, 0)
    m = model([g], [vi("x", I8, [1, 4])], [vi("y", I8, [1, 2])], [w])
    match = r"node 'Gemm_y' \(Gemm\) cannot run on its inputs \(ValueError"
    with pytest.raises(EspdlFormatError, match=match):
        IntegerRunner(m).run(np.zeros((1, 4), np.float32))


def test_all_zero_expected_outputs_are_weak_test_values(tmp_path: Path) -> None:
    path = OPTESTS / "esp32p4_s8" / "Requantize_ishape_1_16_50_50_shift_left_s8.espdl"
    found = sorted(OPTESTS.rglob(path.name)) if OPTESTS.exists() else []
    if not found:
        pytest.skip("shared op tests not present")
    report = check_test_values(found[0], "esp32p4")
    assert report.ok and report.weak
    assert "PASS (weak test values: every expected output is all zero" in report.format()
    r = CliRunner().invoke(app, ["run", str(found[0]), "--check", "--target", "esp32p4"])
    assert r.exit_code == 0 and "warning: weak test values" in r.output, r.output


def test_meaningful_test_values_are_not_weak() -> None:
    path = ZOO / "tutorial_3gemm_s3.espdl"
    if not path.exists():
        pytest.skip("shared zoo not present")
    report = check_test_values(path, "esp32s3")
    assert report.ok and not report.weak and "weak" not in report.format()


def test_flipped_byte_of_the_fuzzer_is_a_format_error() -> None:
    """bench/fuzz_reader.py --flips: byte 7264 of the streaming zoo file made Gemm raise a traceback."""
    path = ZOO / "streaming_esp32s3_streaming_model.espdl"
    if not path.exists():
        pytest.skip("shared zoo not present")
    data = bytearray(path.read_bytes())
    assert data[7264] == 253
    data[7264] = 59
    runner = IntegerRunner(read(bytes(data)), "esp32s3")
    feeds = {n: np.zeros(runner.values[n].shape, np.int8) for n in runner.input_names}
    with pytest.raises(EspdlFormatError, match=r"node '.*' \(Gemm\) cannot run on its inputs \(ValueError"):
        runner.run_q(feeds, raw=True)


# ---------------------------------------------------------------- finding 5: declared sizes are limited
def _onnx(nodes, inits, out_shape, path: Path | None = None) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)
    g = helper.make_graph(nodes, "g", [x], [y], [numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 8
    if path is not None:
        onnx.save(m, path)
    return m


def _constant_of_shape(n: int, path: Path | None = None) -> onnx.ModelProto:
    nodes = [
        helper.make_node("ConstantOfShape", ["shape"], ["c"], name="bomb"),
        helper.make_node("Slice", ["c", "st", "en", "ax"], ["s"], name="slice"),
        helper.make_node("Add", ["x", "s"], ["y"], name="add"),
    ]
    inits = {
        "shape": np.array([1, 3, 8, n], np.int64),
        "st": np.array([0], np.int64),
        "en": np.array([8], np.int64),
        "ax": np.array([3], np.int64),
    }
    return _onnx(nodes, inits, [1, 3, 8, 8], path)


def test_constant_of_shape_bomb_is_refused_before_allocating(tmp_path: Path) -> None:
    path = tmp_path / "bomb.onnx"
    _constant_of_shape(8_000_000, path)
    assert path.stat().st_size < 400
    with pytest.raises(ShapeError, match=r"tensor 'c' \(output of node 'bomb', ConstantOfShape\)") as info:
        espq.load(str(path))
    assert "shape [1, 3, 8, 8000000] (1.92e+08 elements)" in str(info.value)
    assert "ESPQ_MAX_TENSOR_ELEMENTS" in str(info.value)
    code, lines = _cli("check", path)
    assert code == 2 and len(lines) == 1 and "ConstantOfShape" in lines[0], lines


def test_size_limit_override(monkeypatch: pytest.MonkeyPatch) -> None:
    espq.load(_constant_of_shape(8))  # 192 elements: fine by default
    monkeypatch.setenv("ESPQ_MAX_TENSOR_ELEMENTS", "100")
    with pytest.raises(ShapeError, match=r"\(192 elements\), more than the limit of 100 elements"):
        espq.load(_constant_of_shape(8))
    monkeypatch.setenv("ESPQ_MAX_TENSOR_ELEMENTS", "lots")
    with pytest.raises(ConfigError, match=r"ESPQ_MAX_TENSOR_ELEMENTS='lots' must be a positive number"):
        espq.load(_constant_of_shape(8))


@pytest.mark.parametrize(
    ("op", "inits", "attrs", "shape"),
    [
        (
            "Resize",
            {"roi": np.zeros(0, np.float32), "sc": np.array([1, 1, 1e4, 1e4], np.float32)},
            {},
            "80000, 80000",
        ),
        ("Pad", {"p": np.array([0, 0, 0, 0, 0, 0, 0, 10**9], np.int64)}, {}, "1000000008"),
        ("Tile", {"r": np.array([1, 1, 10**5, 10**5], np.int64)}, {}, "800000, 800000"),
        ("Expand", {"r": np.array([10**6, 3, 8, 8], np.int64)}, {}, "1000000, 3, 8, 8"),
    ],
)
def test_activation_size_declarations_are_limited(op: str, inits: dict, attrs: dict, shape: str) -> None:
    n = helper.make_node(op, ["x", *inits], ["y"], name="big", **attrs)
    with pytest.raises(ShapeError, match=rf"tensor 'y' \(output of node 'big', {op}\).*{shape}"):
        espq.load(_onnx([n], inits, None))


def test_fold_constants_checks_the_size_before_evaluating(monkeypatch: pytest.MonkeyPatch) -> None:
    from espq.ir.graph import Node
    from espq.ir.passes.fold_constants import check_output_sizes

    nd = Node(name="bomb", op_type="ConstantOfShape", inputs=["s"], outputs=["c"], attrs={})
    check_output_sizes(nd, {"s": np.array([2, 3], np.int64)}, 18)  # 6 elements
    monkeypatch.setenv("ESPQ_MAX_TENSOR_ELEMENTS", "5")
    with pytest.raises(ShapeError, match=r"node 'bomb' \(ConstantOfShape\) output 'c' declares .*\[2, 3\]"):
        check_output_sizes(nd, {"s": np.array([2, 3], np.int64)}, 18)


def test_espdl_resize_scale_is_limited_before_allocating() -> None:
    r = node("Resize", ["x", "", "sc"], ["y"], mode="nearest")
    sc = init("sc", np.array([1, 1, 1e5, 1e5], np.float32), np.float32)
    m = model([r], [vi("x", I8, [1, 4, 4, 2])], [vi("y", I8, [1, 8, 8, 2])], [sc])
    match = r"node 'Resize_y' \(Resize\) output declares .*\[1, 400000, 400000, 2\]"
    with pytest.raises(ShapeError, match=match):
        IntegerRunner(m).run(np.zeros((1, 2, 4, 4), np.float32))  # ONNX layout


def test_espdl_pad_is_limited_before_allocating() -> None:
    p = node("Pad", ["x", "p"], ["y"], mode="constant")
    pads = init("p", np.array([0, 0, 0, 2**40], np.int64), np.int64)
    m = model([p], [vi("x", I8, [1, 4])], [vi("y", I8, [1, 8])], [pads])
    with pytest.raises(ShapeError, match=r"node 'Pad_y' \(Pad\) output declares .*1099511627780"):
        IntegerRunner(m).run(np.zeros((1, 4), np.float32))


def test_image_folder_is_decoded_batch_by_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    import espq.data

    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    decoded = []
    real = espq.data.load_image
    monkeypatch.setattr(espq.data, "load_image", lambda f, *a: decoded.append(f.name) or real(f, *a))
    batches = espq.data.load_calibration(folder, batch_size=2, size=[8, 8])
    assert len(batches) == 3 and decoded == []
    first = batches[0]
    assert first.shape == (2, 3, 8, 8) and decoded == ["0.png", "1.png"]
    np.testing.assert_allclose(first[1], real(folder / "1.png", [8, 8], (0.0,), (1.0,), 1 / 255))
    assert batches[-1].shape == (2, 3, 8, 8) and decoded[-2:] == ["4.png", "5.png"]
    with pytest.raises(IndexError):
        batches[3]


# ---------------------------------------------------------------- minor
def test_package_model_names_are_escaped(tmp_path: Path) -> None:
    from espq.espdl.pack import format_package_summary

    summary = {"format": "PDL3", "version": "v1.0", "models": [{"name": "a\x1b[2Jb.espdl", "bytes": 10}]}
    text = format_package_summary(summary, "p")
    assert "\x1b" not in text and "a\\x1b[2Jb.espdl" in text


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf")])
def test_auto_mixed_precision_max_error_must_be_finite_non_negative(bad: float) -> None:
    from espq.quant.mixed_precision import auto_mixed_precision

    with pytest.raises(ConfigError, match=r"max_error must be a finite number >= 0"):
        auto_mixed_precision(None, [], max_error=bad)


def test_initializer_data_that_disagrees_with_dims_is_a_load_error() -> None:
    """bench/fuzz_onnx.py: dims [3, 1000] over 3 floats of data gave numpy's reshape traceback."""
    from espq.errors import ModelLoadError

    m = _onnx([helper.make_node("Add", ["x", "k"], ["y"], name="add")], {"k": np.ones(3, np.float32)}, None)
    m.graph.initializer[0].dims[:] = [3, 1000]
    match = r"initializer 'k' \(dims \[3, 1000\], data_type 1\) cannot be read"
    with pytest.raises(ModelLoadError, match=match):
        espq.load(m)

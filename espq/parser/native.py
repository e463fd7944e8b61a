"""``NativeExporter``: where an ESP-PPQ script saves its ``.native`` file, espq saves its own model.

ESP-PPQ's ``.native`` is a pickle of its ``BaseGraph``; espq cannot write or read that format. In its
place :meth:`NativeExporter.export` writes a zip archive with espq's quantized model: ``graph.onnx`` (the
canonical float graph whose parameters the plan quantizes), ``plan.json`` (every tensor's exponent and
bit width, :meth:`espq.QuantizedModel.save_plan`'s format), ``float_graph.onnx`` (the float model it
approximates) and ``ABOUT.txt`` saying so. Same model, same bytes (fixed zip timestamps); the file is
written atomically. :func:`load_native_graph` reads such an archive back into a
:class:`~espq.QuantizedModel` (the plan re-applied without calibrating).
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import onnx

from espq._version import __version__
from espq.errors import ConfigError, ModelLoadError
from espq.ir.onnx_io import graph_from_onnx, graph_to_onnx
from espq.ir.spec import QuantPlan
from espq.quant import QuantSetting, quantize
from espq.quant.model import QuantizedModel
from espq.utils import atomic_write_bytes

ABOUT = (
    "espq model archive written in place of an ESP-PPQ .native file (not ESP-PPQ's pickle format).\n"
    "graph.onnx: canonical float graph the plan quantizes; plan.json: exponents/bits per tensor\n"
    "(QuantizedModel.save_plan format); float_graph.onnx: the float model it approximates;\n"
    "meta.json: target, bits, int16 LUT step, espq version. espq.api.load_native_graph reads it back.\n"
)
_DATE = (2020, 1, 1, 0, 0, 0)


class NativeExporter:
    """ESP-PPQ's exporter class name; ``export(file_path, graph)`` writes espq's model archive."""

    def export(
        self,
        file_path: str | Path,
        graph: QuantizedModel,
        config_path: str | None = None,
        dump_value: bool = True,
    ) -> Path:
        """Write ``graph`` (what ``espdl_quantize_*`` returned) to ``file_path``; returns the path."""
        if not isinstance(graph, QuantizedModel):
            raise ConfigError(
                f"NativeExporter.export(graph=...) needs the model espdl_quantize_* returned, got "
                f"{type(graph).__name__}"
            )
        if config_path is not None:
            raise ConfigError(
                "NativeExporter.export(config_path=...): espq keeps the plan inside the archive"
            )
        if not dump_value:
            raise ConfigError("NativeExporter.export(dump_value=False): espq always stores the parameters")
        meta = {
            "target": graph.target.name,
            "bits": graph.plan.bits,
            "int16_lut_step": graph.int16_lut_step,
            "espq_version": __version__,
        }
        members = {
            "ABOUT.txt": ABOUT.encode(),
            "meta.json": json.dumps(meta, indent=1, sort_keys=True).encode(),
            "plan.json": json.dumps(graph.plan.to_json(), indent=1, sort_keys=True).encode(),
            "graph.onnx": graph_to_onnx(graph.graph).SerializeToString(),
            "float_graph.onnx": graph_to_onnx(graph.float_graph).SerializeToString(),
        }
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data in members.items():
                zf.writestr(zipfile.ZipInfo(name, _DATE), data, zipfile.ZIP_DEFLATED)
        path = Path(file_path)
        atomic_write_bytes(path, buf.getvalue())
        return path


def load_native_graph(import_file: str | Path) -> QuantizedModel:
    """The model :meth:`NativeExporter.export` wrote to ``import_file``: its graph with its plan re-applied
    (no calibration; equalization and bias correction are already in the stored graph)."""
    path = Path(import_file)
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such file (expected an archive written by espq's NativeExporter)")
    try:
        with zipfile.ZipFile(path) as zf:
            meta = json.loads(zf.read("meta.json"))
            plan = QuantPlan.from_json(json.loads(zf.read("plan.json")))
            graph_bytes, float_bytes = zf.read("graph.onnx"), zf.read("float_graph.onnx")
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise ModelLoadError(
            f"{path}: not an espq model archive ({exc}); ESP-PPQ's own .native pickles cannot be read by espq"
        ) from exc
    steps_off = QuantSetting(equalization=False, exponent_search=False, bias_correction=False)
    qm = quantize(
        onnx.load_from_string(graph_bytes), None, target=meta["target"], bits=meta["bits"], plan=plan,
        setting=steps_off, progress=False,
    )  # fmt: skip
    qm.float_graph = graph_from_onnx(onnx.load_from_string(float_bytes))
    qm.int16_lut_step = int(meta.get("int16_lut_step", qm.int16_lut_step))
    qm._sim = None  # rebuilt with the stored LUT step on first use
    return qm

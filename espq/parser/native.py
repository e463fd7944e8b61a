"""``NativeExporter``: where an ESP-PPQ script saves its ``.native`` file, espq saves its own model.

ESP-PPQ's ``.native`` is a pickle of its ``BaseGraph``; espq cannot write or read that format. In its
place :meth:`NativeExporter.export` writes a zip archive with espq's quantized model: ``graph.onnx`` (the
canonical float graph whose parameters the plan quantizes), ``plan.json`` (every tensor's exponent and
bit width, :meth:`espq.QuantizedModel.save_plan`'s format), ``float_graph.onnx`` (the float model it
approximates) and ``ABOUT.txt`` saying so. Same model, same bytes (fixed zip timestamps); the file is
written atomically.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

from espq._version import __version__
from espq.errors import ConfigError
from espq.ir.onnx_io import graph_to_onnx
from espq.quant.model import QuantizedModel
from espq.utils import atomic_write_bytes

ABOUT = (
    "espq model archive written in place of an ESP-PPQ .native file (not ESP-PPQ's pickle format).\n"
    "graph.onnx: canonical float graph the plan quantizes; plan.json: exponents/bits per tensor\n"
    "(QuantizedModel.save_plan format); float_graph.onnx: the float model it approximates;\n"
    "meta.json: target, bits, espq version.\n"
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
        meta = {"target": graph.target.name, "bits": graph.plan.bits, "espq_version": __version__}
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

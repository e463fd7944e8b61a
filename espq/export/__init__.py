"""Export a quantized model to a loadable `.espdl` file (esp_dl_facts.md §9, esp_ppq_facts.md App. C).

Public API::

    export_model(qm, path, export_test_values=False, test_inputs=None, test_output_names=None,
                 metadata_props=None, model_version=0, export_config=True, int16_lut_step=32,
                 doc_string="") -> EspdlModel
    build_espdl(qm, ...same options..., without path) -> EspdlModel
    plan_from_espdl(graph, plan, reference) -> (QuantPlan, unmatched names)
    compare_models(ours, reference) -> dict of differences by category

Pipeline: :func:`espq.export.lower.lower` (rewrites on a copy of the IR) ->
:func:`espq.export.builder.build_model` -> optional test values -> validation ->
one atomic set of ``path`` and, with ``export_config``, ``<stem>.info`` / ``<stem>.json``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from espq._version import __version__
from espq.espdl.model import EspdlModel
from espq.export.builder import build_model
from espq.export.lower import lower
from espq.export.reference import compare_models, plan_from_espdl
from espq.export.self_test_values import build_test_values, default_inputs
from espq.export.streaming import StreamingOptions, first_chunk_inputs, fix_frame_axes, streaming_model
from espq.ir.passes.split_mixed_outputs import SPLIT_KEY
from espq.utils import atomic_write_set


def build_espdl(
    qm,
    export_test_values: bool = False,
    test_inputs: Any = None,
    test_output_names: Sequence[str] | None = None,
    metadata_props: Mapping[str, str] | None = None,
    model_version: int = 0,
    int16_lut_step: int = 32,
    doc_string: str = "",
    streaming: StreamingOptions | None = None,
) -> EspdlModel:
    """The EspdlModel of quantized model ``qm`` (no validation, nothing written)."""
    return _build(
        qm, export_test_values, test_inputs, test_output_names, metadata_props, model_version,
        int16_lut_step, doc_string, streaming,
    )[0]  # fmt: skip


def _build(
    qm, export_test_values, test_inputs, test_output_names, metadata_props, model_version,
    int16_lut_step, doc_string, streaming,
):  # fmt: skip
    """(model, the quantized model it was lowered from: ``qm`` or its streaming copy)."""
    if streaming is not None:
        qm_offline, qm = qm, streaming_model(qm, streaming)
        if test_inputs is None and (export_test_values or test_output_names):
            test_inputs = default_inputs(qm_offline.graph)  # offline draw: its first chunk is stored
        if test_inputs is not None:
            test_inputs = first_chunk_inputs(streaming, _feed_dict(qm_offline.graph, test_inputs))
    state, _ = lower(qm.graph, qm.plan, qm.target, int16_lut_step)
    if streaming is not None:
        fix_frame_axes(state)
    meta = {"target": qm.target.metadata_name}
    if SPLIT_KEY in qm.graph.metadata:  # outputs split into their parts: the runners re-join them
        meta[SPLIT_KEY] = qm.graph.metadata[SPLIT_KEY]
    meta.update({str(k): str(v) for k, v in (metadata_props or {}).items()})
    model = build_model(state, meta, model_version, doc_string, __version__)
    if export_test_values or test_inputs is not None or test_output_names:
        ins, outs = build_test_values(qm, state, int16_lut_step, test_inputs, test_output_names)
        model.graph.test_inputs, model.graph.test_outputs = ins, outs
    return model, qm


def _feed_dict(graph, inputs: Any) -> dict:
    if isinstance(inputs, Mapping):
        return dict(inputs)
    items = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    return dict(zip(graph.inputs, items))


def export_model(
    qm,
    path: str | os.PathLike,
    export_test_values: bool = False,
    test_inputs: Any = None,
    test_output_names: Sequence[str] | None = None,
    metadata_props: Mapping[str, str] | None = None,
    model_version: int = 0,
    export_config: bool = True,
    int16_lut_step: int = 32,
    doc_string: str = "",
    key: bytes | None = None,
    streaming: StreamingOptions | None = None,
    extra_files: Mapping[str | os.PathLike, bytes | str] | None = None,
    private_files: Mapping[str | os.PathLike, bytes | str] | None = None,
) -> EspdlModel:
    """Write ``qm`` (a :class:`espq.QuantizedModel`) to ``path`` and return the written model.

    * ``export_test_values``: embed test inputs/outputs (fake-quant simulation) so ``Model::test()``
      checks the file on the device; ``test_inputs`` (array, list or dict by input name; default a
      seeded standard-normal batch of one) and ``test_output_names`` (default the graph outputs; may
      name intermediate tensors) imply it.
    * ``metadata_props``: extra key/values (``target`` is always the target's metadata name).
    * ``export_config``: also write ``<stem>.info`` (text dump) and ``<stem>.json`` (quantization
      config).
    * ``int16_lut_step``: table step of int16 LUT ops (power of two; 0 keeps int16 activations as
      their own modules).
    * ``key``: a 16-byte AES key: the payload is AES-128-CTR encrypted (mode 1, header plain).
    * ``streaming``: :func:`espq.export.streaming.streaming_options` - a streaming export (chunk
      input shape, StreamingCache nodes; test values = the first chunk from a fresh state).
    * ``extra_files``: more outputs (path -> bytes or text, e.g. the HTML report) written in the same set;
      ``private_files`` likewise, with mode 0600 (the key files of ``key="auto"``).

    All outputs are written as one set (:func:`espq.utils.atomic_write_set`): temporary names, then
    renames; on a failure none of the new files stays behind and an older set is left as it was.

    Same inputs give byte-identical files. Raises UnsupportedOpError for a node the target cannot
    run, ConfigError for an unwritable path, ValidationError when the model breaks an ESP-DL rule.
    """
    from espq.espdl import write_bytes
    from espq.espdl.config_json import config_json_text
    from espq.espdl.info import info_text
    from espq.espdl.validate import validate

    model, src = _build(
        qm, export_test_values, test_inputs, test_output_names, metadata_props, model_version,
        int16_lut_step, doc_string, streaming,
    )  # fmt: skip
    validate(model, qm.target, strict=True)
    path = Path(path)
    outputs: dict[str | os.PathLike, bytes | str] = {path: write_bytes(model, key)}
    if export_config:
        stem = path.with_suffix("")
        outputs[stem.with_suffix(".info")] = info_text(model)
        outputs[stem.with_suffix(".json")] = config_json_text(model, src.plan, qm.target)
    outputs.update(extra_files or {})
    outputs.update(private_files or {})
    atomic_write_set(outputs, private=list(private_files or {}))
    return model


__all__ = ["build_espdl", "compare_models", "export_model", "plan_from_espdl"]

"""The result of quantization: graph + plan + target, runnable in float and fake-quant."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from espq.ir import Graph
from espq.ir.passes.split_mixed_outputs import expand_split_outputs, join_split_outputs, split_record
from espq.ir.spec import QuantPlan
from espq.targets import CapabilityReport, Target


def export_outputs(path: str | Path, export_config: bool = True) -> list[Path]:
    """The files an export to ``path`` writes: the ``.espdl`` and, with ``export_config``, its side files."""
    p = Path(path)
    stem = p.with_suffix("")  # as the exporter names them
    side = [stem.with_suffix(".info"), stem.with_suffix(".json")] if export_config else []
    return [p, *side]


class QuantizedModel:
    """A quantized model: ``graph`` (canonical IR whose parameters the plan quantizes), ``plan`` (every
    tensor's spec), ``target``; ``float_graph`` is the float model it approximates.

    ``run`` executes the fake-quant simulation, ``run_float`` the float model; both take the same input
    conventions as :func:`espq.run_float` and return numpy arrays by tensor name. A graph output split
    into its parts (mixed-range Concat, :mod:`espq.ir.passes.split_mixed_outputs`) is returned as its
    parts plus, under its original name, the parts concatenated again.
    """

    def __init__(
        self,
        graph: Graph,
        plan: QuantPlan,
        target: Target,
        capability: CapabilityReport | None = None,
        stats: dict | None = None,
        float_graph: Graph | None = None,
        steps=None,
    ):
        self.graph = graph
        #: the float model the quantized one approximates (``graph`` may carry bias-corrected biases)
        self.float_graph = graph if float_graph is None else float_graph
        #: the accuracy steps (recipe) this model was built with (:class:`espq.quant.recipes.Steps`)
        self.steps = steps
        #: automatic mixed precision's report, when the model came from ``auto_mixed_precision``
        self.amp_report = None
        self.plan = plan
        self.target = target
        self.capability = capability
        self.stats = stats or {}
        self._sim = None
        self.report = None  # the analysis report, once computed
        #: int16 activations exported as nearest-entry tables use this step (export's default); the
        #: simulator reproduces those tables (0: exact int16 activations, no tables)
        self.int16_lut_step = 32
        #: files this model was made from (model, calibration data); :meth:`export` never writes over them
        self.source_files: list[Path] = []

    @property
    def sim(self):
        """The fake-quant simulator (built on first use)."""
        if self._sim is None:
            from espq.sim.fakequant import FakeQuantSim

            self._sim = FakeQuantSim(self.graph, self.plan, self.target, int16_lut_step=self.int16_lut_step)
        return self._sim

    def run(self, inputs: Any, outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Fake-quant inference; ``outputs`` may name intermediate tensors."""
        from espq.sim.float import prepare_inputs

        feeds = prepare_inputs(self.graph, inputs)
        record = split_record(self.graph.metadata)
        with torch.no_grad():
            res = self.sim.run_torch(feeds, expand_split_outputs(record, outputs))
        return join_split_outputs(record, {k: v.detach().cpu().numpy() for k, v in res.items()}, outputs)

    def run_float(self, inputs: Any, outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Float inference of the same (canonicalised) graph."""
        from espq.sim.float import run_float

        record = split_record(self.float_graph.metadata)
        res = run_float(self.float_graph, inputs, outputs=expand_split_outputs(record, outputs))
        return join_split_outputs(record, res, outputs)

    def export(
        self,
        path: str | Path,
        export_test_values: bool = False,
        test_inputs: Any = None,
        test_output_names: Sequence[str] | None = None,
        metadata_props: dict[str, str] | None = None,
        model_version: int = 0,
        export_config: bool = True,
        int16_lut_step: int | None = None,
        key: bytes | str | Path | None = None,
        overwrite: bool = False,
        streaming_input_shape: Any = None,
        auto_streaming: bool = False,
        streaming_table: Any = None,
        streaming_custom_passes: Sequence[Any] | None = None,
        extra_files: dict[str | Path, bytes | str] | None = None,
    ):
        """Write ``path`` (.espdl) and, with ``export_config``, ``<stem>.info`` and ``<stem>.json``.

        An existing output espq did not write is replaced only with ``overwrite``; an output that is
        one of ``source_files`` never (:func:`espq.utils.check_outputs`, ConfigError).

        ``key`` encrypts the payload (AES-128-CTR, header plain; needs the ``[crypto]`` extra): 16
        bytes, 32 hex digits or a key file; ``"auto"`` draws a random key and writes it to
        ``<stem>.key`` and ``<stem>_key.h`` (mode 0600; never printed).
        ``extra_files`` (path -> bytes or text, e.g. an HTML report) join the output set: all outputs
        are written together (temporary names, then renames); on a failure none of the new files
        stays behind and an older set is left intact (:func:`espq.utils.atomic_write_set`).
        Streaming export (ESP-PPQ's arguments, :mod:`espq.export.streaming`): ``streaming_input_shape``
        is the chunk shape (one dim differs from the calibrated shape: the frame axis);
        ``auto_streaming`` puts a StreamingCache before every Conv/pool along it; ``streaming_table``
        lists :func:`espq.api.insert_streaming_cache_on_var` entries; ``streaming_custom_passes`` are
        callables run on the IR graph copy first.
        The file is validated before it is written; the same model and inputs give identical bytes.
        Returns the written :class:`espq.espdl.EspdlModel`.
        """
        from espq.espdl.encrypt import key_file_texts, resolve_export_key
        from espq.export import export_model
        from espq.export.streaming import streaming_options
        from espq.utils import check_outputs

        streaming = streaming_options(
            self.graph, streaming_input_shape, auto_streaming, streaming_table, streaming_custom_passes
        )
        aes_key, generated = resolve_export_key(key)
        private = key_file_texts(aes_key, path) if generated else {}
        outputs = [*export_outputs(path, export_config), *(extra_files or {})]
        check_outputs(outputs, self.source_files, overwrite)
        model = export_model(
            self,
            path,
            export_test_values=export_test_values,
            test_inputs=test_inputs,
            test_output_names=test_output_names,
            metadata_props=metadata_props,
            model_version=model_version,
            export_config=export_config,
            int16_lut_step=self.int16_lut_step if int16_lut_step is None else int16_lut_step,
            key=aes_key,
            streaming=streaming,
            extra_files=extra_files,
            private_files=private,
        )
        return model

    def analyse(
        self,
        data: Any,
        steps: int = 8,
        kinds: Sequence[str] = ("graphwise", "layerwise", "isolated"),
        collate_fn: Any = None,
        progress: bool = True,
    ):
        """Quantization error analysis (see :func:`espq.analysis.analyse`); also stored in ``.report``."""
        from espq.analysis import analyse

        self.report = analyse(self, data, steps=steps, kinds=kinds, collate_fn=collate_fn, progress=progress)
        return self.report

    def save_plan(self, path: str | Path) -> None:
        """Write the plan as JSON; ``espq.quantize(..., plan=path)`` re-applies it without calibrating."""
        self.plan.save(path)

    def trainable(self, train_exponents: bool = False) -> torch.nn.Module:
        """A ``torch.nn.Module`` computing exactly what :meth:`run` computes (QAT), with straight-through
        gradients; weights trainable, exponents (α = log2 scale) with ``train_exponents``
        (:class:`espq.sim.trainable.TrainableFakeQuant`). Train it with your own loss and labels, then
        :meth:`update`."""
        from espq.sim.trainable import TrainableFakeQuant

        return TrainableFakeQuant(
            self.graph,
            self.plan,
            self.target,
            int16_lut_step=self.int16_lut_step,
            train_weights=True,
            train_exponents=train_exponents,
        )

    def update(self, module: torch.nn.Module) -> None:
        """Take the trained weights and integer exponents of ``module`` (from :meth:`trainable`): the graph
        gets the float weights, the plan the exponents, with biases/Clip bounds re-derived; ``float_graph``
        (the float reference) is kept. Export as usual afterwards."""
        from espq.quant.finetune import apply_trained

        self.graph, self.plan = apply_trained(self.graph, self.plan, module)
        self._sim = None

    def __repr__(self) -> str:
        n16 = len(self.plan.int16_nodes())
        return (
            f"QuantizedModel({self.graph.name!r}, target={self.target.name}, bits={self.plan.bits}, "
            f"{len(self.graph.nodes)} nodes, {n16} int16 node(s))"
        )

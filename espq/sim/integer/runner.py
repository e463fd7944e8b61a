"""Execute a `.espdl` file with ESP-DL's integer arithmetic for one target, bit-exact with the chip.

Nodes run in stored order (esp_dl_facts.md §2.1: the runtime does not sort). Every activation is a
:class:`QTensor` in the exported layout; after each kernel its data is cast to the output's ValueInfo
dtype and labelled with the ValueInfo exponent, which is what the runtime's TensorBase carries.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from espq.errors import ConfigError, EspdlFormatError, InputDataError, UnsupportedOpError
from espq.espdl import read
from espq.espdl.model import EspdlModel, EspdlValueInfo
from espq.espdl.validate import require_valid
from espq.ir.passes.split_mixed_outputs import expand_split_outputs, join_split_outputs, split_record
from espq.sim.integer import layout_replay as io
from espq.sim.integer.base import INT_KERNELS, IntContext, QTensor
from espq.targets import TARGETS, Target, get_target
from espq.targets.infer import target_candidates

_loaded = False


def load_kernels() -> None:
    """Import every ``kernels_*`` module of this package (their decorators fill INT_KERNELS)."""
    global _loaded
    if _loaded:
        return
    pkg_dir = str(Path(__file__).parent)
    for mod in pkgutil.iter_modules([pkg_dir]):
        if mod.name.startswith("kernels_"):
            importlib.import_module(f"espq.sim.integer.{mod.name}")
    _loaded = True


def resolve_target(model: EspdlModel, target: str | Target | None, source: str = "model") -> Target:
    """The explicit ``target`` if given, else the file's ``metadata_props["target"]``.

    ConfigError when neither is available, naming the targets the file's weights fit
    (:func:`espq.targets.infer.target_candidates`): no guess, since a P4 file with per-tensor weights
    looks like an S3 one and runs with different rounding.
    """
    if target is not None:
        return get_target(target)
    if model.target:
        return get_target(model.target)
    fits = " or ".join(t.name for t in target_candidates(model)) or "none of the registered targets"
    raise ConfigError(
        f"{source} does not name its target (metadata_props has no 'target'; Espressif's zoo files carry "
        f"none); pass a target (target=... / --target): its weights fit {fits} "
        f"(valid names: {', '.join(TARGETS)})"
    )


class IntegerRunner:
    """Integer execution of one `.espdl` model on the host, bit-exact with ESP-DL on ``target``.

    ``model_or_path``: an :class:`EspdlModel` or a path to a `.espdl` file. ``target``: chip name;
    defaults to the file's ``metadata_props["target"]``. The model is validated first
    (:func:`espq.espdl.validate.require_valid`: :class:`espq.errors.InvalidFileError` naming the first
    violation); kernels refuse declared sizes beyond :mod:`espq.ir.limits` before allocating; float
    inputs must be finite (InputDataError).

    Layouts: ``self.perms[name]`` (or :meth:`perm`) is the permutation that maps a tensor's exported
    layout to its ONNX layout (exported axis i = ONNX axis ``perm[i]``), recovered by replaying
    ESP-PPQ's layout rules over the graph (see :mod:`espq.sim.integer.layout_replay`): graph inputs read by
    conv-like ops and everything produced by conv-like ops is NHWC / NWC. Float inputs and outputs of
    :meth:`run` use the ONNX layout; raw ones the exported layout.

    Decoded weights are cached per node, so the model must not be modified after construction.
    """

    def __init__(self, model_or_path: EspdlModel | str | os.PathLike, target: str | Target | None = None):
        load_kernels()
        if isinstance(model_or_path, EspdlModel):
            self.model, self.source = model_or_path, f"model '{model_or_path.graph.name}'"
        else:
            self.model, self.source = read(model_or_path), f"file '{model_or_path}'"
        self.target = resolve_target(self.model, target, self.source)
        g = self.model.graph
        self.values: dict[str, EspdlValueInfo] = io.value_infos(self.model)
        self.perms = io.layout_perms(self.model)
        self.input_names = [vi.name for vi in g.inputs]
        self.output_names = [vi.name for vi in g.outputs]
        self._state: dict[str, dict] = {}
        unknown = [(n.name, n.op_type) for n in g.nodes if n.op_type not in INT_KERNELS]
        if unknown:
            listing = ", ".join(f"node '{name}' op '{op}'" for name, op in unknown)
            raise UnsupportedOpError(
                f"{self.source}: no integer kernel for {listing}; espq cannot run this op bit-exactly yet"
            )
        require_valid(self.model, self.source)  # exponents, data lengths, sizes: before allocating

    def reset(self) -> None:
        """Clear the state kept between runs (StreamingCache windows), like ``Model::reset``."""
        self._state.clear()

    def perm(self, name: str) -> tuple[int, ...] | None:
        """The exported→original permutation of tensor ``name`` (None = same layout)."""
        return self.perms.get(name)

    def original_shape(self, name: str) -> tuple[int, ...] | None:
        """The ONNX-layout shape of a tensor, None when the file stores no static shape."""
        shape = io.static_shape(self.values.get(name))
        return None if shape is None else io.original_shape(shape, self.perm(name))

    # ------------------------------------------------------------------ inputs / outputs
    def _feed(self, name: str, x: np.ndarray, raw: bool) -> QTensor:
        vi = self.values[name]
        dt = io.np_dtype(vi.elem_type)
        shape = io.static_shape(vi)
        x = np.asarray(x)
        if raw:
            if x.dtype != dt:
                raise InputDataError(
                    f"{self.source}: raw input '{name}' must be {dt} (as stored), got {x.dtype}; "
                    "pass raw=False to give float values"
                )
            if shape is not None and tuple(x.shape) != shape:
                raise InputDataError(
                    f"{self.source}: raw input '{name}' expects shape {list(shape)} (exported layout), "
                    f"got {list(x.shape)}"
                )
            return QTensor(np.ascontiguousarray(x), vi.exponent)
        if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
            raise InputDataError(f"{self.source}: input '{name}' must be numeric, got dtype {x.dtype}")
        if np.issubdtype(x.dtype, np.inexact) and not np.isfinite(x).all():
            raise InputDataError(
                f"{self.source}: input '{name}' holds {int((~np.isfinite(x)).sum())} NaN/Inf value(s); "
                "the chip would quantize them to arbitrary codes, so pass finite values"
            )
        want = self.original_shape(name)
        if want is not None and tuple(x.shape) != want:
            raise InputDataError(
                f"{self.source}: input '{name}' expects shape {list(want)} (ONNX layout), got {list(x.shape)}"
            )
        data = io.quantize_input(io.to_exported(x, self.perm(name)), vi, self.target)
        return QTensor(data, vi.exponent if np.issubdtype(dt, np.integer) else 0)

    # ------------------------------------------------------------------ execution
    def run_q(
        self, inputs: object, raw: bool = False, outputs: list[str] | None = None
    ) -> dict[str, QTensor]:
        """Like :meth:`run` but returns the chip tensors (raw data + exponent, exported layout)."""
        feeds = io.as_feed_dict(inputs, self.input_names)
        missing = [n for n in self.input_names if n not in feeds]
        extra = [n for n in feeds if n not in self.input_names]
        if missing or extra:
            raise InputDataError(
                f"{self.source}: inputs {sorted(feeds)} do not match the graph inputs {self.input_names}"
                + (f" (missing {missing})" if missing else "")
                + (f" (unknown {extra})" if extra else "")
            )
        wanted = list(self.output_names if outputs is None else outputs)
        g = self.model.graph
        known = set(self.input_names) | {t for n in g.nodes for t in n.outputs}
        bad = [w for w in wanted if w not in known]
        if bad:
            raise ConfigError(
                f"{self.source}: requested tensor(s) {bad} are neither graph inputs nor node outputs"
            )
        env: dict[str, QTensor] = {n: self._feed(n, feeds[n], raw) for n in self.input_names}
        last_use = {t: i for i, node in enumerate(g.nodes) for t in node.inputs}
        keep = set(wanted)
        for i, node in enumerate(g.nodes):
            self._run_node(node, env)
            for t in node.inputs:
                if t in env and last_use.get(t) == i and t not in keep:
                    del env[t]
        missing_out = [w for w in wanted if w not in env]
        if missing_out:
            raise EspdlFormatError(f"{self.source}: tensor(s) {missing_out} were never produced")
        return {w: env[w] for w in wanted}

    def _run_node(self, node, env: dict[str, QTensor]) -> None:
        inits = self.model.graph.initializers
        args: list[QTensor | None] = []
        params = {}
        for k, t in enumerate(node.inputs):
            if not t:
                args.append(None)
            elif t in inits:
                params[k] = inits[t]
                args.append(None)
            elif t in env:
                args.append(env[t])
            else:
                raise EspdlFormatError(
                    f"{self.source}: node '{node.name}' ({node.op_type}) reads tensor '{t}', which no "
                    "earlier node produces and which is not a graph input or initializer"
                )
        vis = [self.values.get(t) for t in node.outputs]
        ctx = IntContext(
            target=self.target,
            node=node,
            model=self.model,
            params=params,
            out_exponents=[vi.exponent if vi is not None else 0 for vi in vis],
            out_dtypes=[io.np_dtype(vi.elem_type) if vi is not None else None for vi in vis],
            out_shapes=[io.static_shape(vi) for vi in vis],
            state=self._state.setdefault(node.name, {}),
        )
        try:
            results = INT_KERNELS[node.op_type](ctx, args)
        except (ValueError, IndexError, TypeError, KeyError, RuntimeError) as exc:
            # numpy/torch errors of a kernel: the file's shapes or attributes disagree with each other
            raise EspdlFormatError(
                f"{self.source}: node '{node.name}' ({node.op_type}) cannot run on its inputs "
                f"({type(exc).__name__}: {exc}); the file's shapes or attributes are inconsistent "
                "(a corrupt file; report it if espq wrote it)"
            ) from exc
        for t, vi, q in zip(node.outputs, vis, results):
            if not t or q is None:
                continue
            if vi is not None:
                dt = io.np_dtype(vi.elem_type)
                is_int = np.issubdtype(dt, np.integer)
                q = QTensor(np.asarray(q.data).astype(dt, copy=False), vi.exponent if is_int else 0)
            env[t] = q

    def run(
        self, inputs: object, raw: bool = False, outputs: list[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Run the model once.

        ``inputs``: mapping graph-input name -> array (or one array for a single-input model, or a
        sequence in graph-input order). ``raw=False``: float values in the ONNX layout, quantised with
        the input exponent and the target rounding, outputs dequantised to float32 in the ONNX layout.
        ``raw=True``: integer arrays exactly as stored (exported layout), raw outputs returned.
        ``outputs``: tensor names to return (graph outputs by default; intermediates allowed). A graph
        output espq split into its parts (``metadata_props["espq.split_outputs"]``) is returned, without
        ``raw``, as its parts plus the parts concatenated again under the original name (which
        ``outputs`` may name); with ``raw`` as its parts only (their exponents differ).
        """
        if raw:
            return {k: q.data for k, q in self.run_q(inputs, raw, outputs).items()}
        record = split_record(self.model.metadata_props)
        res = self.run_q(inputs, raw, expand_split_outputs(record, outputs))
        out = {k: io.to_original(q.dequantize(), self.perm(k)) for k, q in res.items()}
        return join_split_outputs(record, out, outputs)


def run_espdl(
    path_or_model: EspdlModel | str | os.PathLike,
    inputs: Mapping[str, np.ndarray] | np.ndarray,
    target: str | Target | None = None,
    raw: bool = False,
    outputs: list[str] | None = None,
) -> dict[str, np.ndarray]:
    """One-shot :meth:`IntegerRunner.run`."""
    return IntegerRunner(path_or_model, target).run(inputs, raw=raw, outputs=outputs)

"""The `<stem>.json` side file: the quantization config in ESP-PPQ's layout (esp_ppq_facts.md §4.13).

Top-level keys ``configs`` (op name -> variable name -> config), ``dispatchings`` (op name -> ESP-PPQ
platform, e.g. ``ESPDL_INT8``) and ``values`` (hash -> ``scale``/``zero_point`` of every root config).

Built from the file contents, so it describes exactly what the `.espdl` stores:

* one entry per quantized node (quant_type S8/S16) except the Quantize/Requantize/DequantizeLinear nodes,
  which ESP-PPQ inserts as plain (non-quantable) ops; variables are the node's inputs then outputs;
* ``bit_width``: the node's bits for activations, weights and other integer parameters; the target's bias
  bits for Conv/Gemm biases (32 P4/C int8, 20 S3 int8, 40 P4/S3 int16, 64 C int16; esp_ppq §2.1);
* ``policy``: symmetric power-of-two linear, per channel when the tensor stores several exponents;
* ``state``, an approximation of ESP-PPQ's (§4.13 state names): weights and the first config of each
  activation ``ACTIVATED``; later configs of the same activation ``OVERLAPPED`` (dominated by the first);
  outputs of ops that keep their input exponent (``EQUAL_EXPONENT_OPS``) ``OVERLAPPED`` by their first
  input; biases and other integer parameters ``PASSIVE``; non-integer tensors (index vectors, float
  scales, float outputs) ``FP32``. With an espq :class:`~espq.ir.spec.QuantPlan` the plan's spec
  source decides instead (observed -> ACTIVATED, shared -> OVERLAPPED, derived/fixed -> PASSIVE);
* ``hash``: a CRC-32 of ``"<op>/<variable>"`` (ESP-PPQ uses a time-seeded LCG; this is deterministic),
  ``dominator``: the hash of the root config;
* ``values``: ``scale = 2**exponent`` (a list when per channel), ``zero_point = 0.0``.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

from espq.errors import ConfigError
from espq.espdl.model import EspdlModel, EspdlNode
from espq.espdl.schema import TensorDataType as DT
from espq.espdl.validate import BITS, CONVERT_OPS, quant_type_of
from espq.ir.spec import DERIVED, FIXED, OBSERVED, SHARED, QuantPlan
from espq.targets import EQUAL_EXPONENT_OPS, Target, get_target
from espq.targets.infer import infer_target

_STATE_OF_SOURCE = {OBSERVED: "ACTIVATED", SHARED: "OVERLAPPED", DERIVED: "PASSIVE", FIXED: "PASSIVE"}


def _hash(op: str, var: str, used: set[int]) -> int:
    h = zlib.crc32(f"{op}/{var}".encode())
    while h in used:  # keep hashes unique, deterministically
        h = (h + 1) & 0xFFFFFFFF
    used.add(h)
    return h


def _policy(per_channel: bool) -> dict[str, bool]:
    return {
        "PER_TENSOR": not per_channel,
        "PER_CHANNEL": per_channel,
        "LINEAR": True,
        "FLOATING": False,
        "SYMMETRICAL": True,
        "ASYMMETRICAL": False,
        "POWER_OF_2": True,
        "DYNAMIC": False,
    }


class _Builder:
    def __init__(self, model: EspdlModel, target: Target, plan: QuantPlan | None):
        self.g = model.graph
        self.target = target
        self.plan = plan
        self.vi = {v.name: v for v in self.g.value_info}
        self.root: dict[str, int] = {}  # activation -> hash of its root config
        self.used: set[int] = set()
        self.configs: dict[str, dict[str, Any]] = {}
        self.values: dict[str, dict[str, Any]] = {}

    def exponents(self, var: str) -> list[int]:
        t = self.g.initializers.get(var)
        if t is not None:
            return list(t.exponents) or [0]
        v = self.vi.get(var)
        return [v.exponent] if v is not None else [0]

    def dtype(self, var: str) -> int | None:
        t = self.g.initializers.get(var)
        if t is not None:
            return t.data_type
        v = self.vi.get(var)
        return None if v is None else v.elem_type

    def quantized(self, node: EspdlNode, var: str, idx: int | None) -> bool:
        """Integer activations/parameters, and Conv/Gemm biases; index vectors and floats are FP32."""
        if node.op_type in ("Conv", "Gemm") and idx == 2:
            return True
        return self.dtype(var) in (DT.INT8, DT.INT16)

    def state(self, node: EspdlNode, var: str, idx: int | None) -> tuple[str, str | None]:
        """(state, tensor whose root dominates it or None) for input ``idx`` (None: an output)."""
        if not self.quantized(node, var, idx):
            return "FP32", None
        spec = self.plan.spec(var) if self.plan is not None else None
        if spec is not None:
            state = _STATE_OF_SOURCE.get(spec.source, "ACTIVATED")
            if idx is not None and var in self.root:
                return "OVERLAPPED", var
            ref = spec.ref[0] if spec.source == SHARED and spec.ref else None
            return state, ref if ref in self.root else None
        if var in self.g.initializers:
            if node.op_type in ("Conv", "Gemm", "MatMul") and idx == 1:
                return "ACTIVATED", None
            return "PASSIVE", None
        if idx is not None:
            return ("OVERLAPPED", var) if var in self.root else ("ACTIVATED", None)
        if node.op_type in EQUAL_EXPONENT_OPS:
            first = next((t for t in node.inputs if t in self.root), None)
            if first is not None and self.exponents(first) == self.exponents(var):
                return "OVERLAPPED", first
        return "ACTIVATED", None

    def config(self, node: EspdlNode, var: str, idx: int | None, bits: int) -> dict[str, Any]:
        state, dominated_by = self.state(node, var, idx)
        exps = self.exponents(var)
        width = bits
        if node.op_type in ("Conv", "Gemm") and idx == 2:
            width = self.target.bias_bits[bits]
        h = _hash(node.name, var, self.used)
        dominator = self.root[dominated_by] if dominated_by is not None else h
        if var not in self.g.initializers and var not in self.root:
            self.root[var] = dominator
        if dominator == h and state != "FP32":
            scale = [2.0**e for e in exps] if len(exps) > 1 else 2.0 ** exps[0]
            zero = [0.0] * len(exps) if len(exps) > 1 else 0.0
            self.values[str(h)] = {"scale": scale, "zero_point": zero}
        return {
            "bit_width": width,
            "policy": _policy(len(exps) > 1),
            "state": state,
            "quant_min": -(1 << (width - 1)),
            "quant_max": (1 << (width - 1)) - 1,
            "hash": h,
            "dominator": dominator,
        }

    def build(self) -> dict[str, Any]:
        dispatch: dict[str, str] = {}
        for node in self.g.nodes:
            qt = quant_type_of(node)
            if qt not in BITS or node.op_type in CONVERT_OPS:
                continue
            bits = BITS[qt]
            cfg: dict[str, Any] = {}
            for i, var in enumerate(node.inputs):
                if var and var not in cfg:
                    cfg[var] = self.config(node, var, i, bits)
            for var in node.outputs:
                if var and var not in cfg:
                    cfg[var] = self.config(node, var, None, bits)
            self.configs[node.name] = cfg
            dispatch[node.name] = self.target.ppq_platforms[bits]
        return {"configs": self.configs, "dispatchings": dispatch, "values": self.values}


def config_json(
    model: EspdlModel, plan: QuantPlan | None = None, target: str | Target | None = None
) -> dict[str, Any]:
    """The `<stem>.json` quantization config of ``model`` as a dict (see the module docstring).

    ``target``: chip for the platform names and bias widths; default ``plan.target``, then
    ``metadata_props["target"]``, then :func:`espq.targets.infer.infer_target`. ``plan``: the espq plan the
    file was exported from; its spec sources set the config states of the tensors it names.
    """
    name = target if target is not None else (plan.target if plan is not None else None)
    try:
        tgt = get_target(name) if name is not None else infer_target(model)
    except ConfigError as exc:
        raise ConfigError(f"config_json: {exc}") from None
    return _Builder(model, tgt, plan).build()


def config_json_text(
    model: EspdlModel, plan: QuantPlan | None = None, target: str | Target | None = None
) -> str:
    """:func:`config_json` serialised like ESP-PPQ (indent 4), with sorted keys for reproducible files."""
    return json.dumps(config_json(model, plan, target), indent=4, sort_keys=True)


__all__ = ["config_json", "config_json_text"]

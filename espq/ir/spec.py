"""Quantization specs and the plan: an immutable record per tensor, saved to JSON as is.

A tensor's value is ``int * 2**exponent`` (symmetric, power-of-two, no zero point). Per-channel
specs carry one exponent per channel along ``axis``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from espq.errors import ConfigError

#: How a spec's exponent is obtained.
OBSERVED = "observed"  # calibrated from activation statistics or parameter values
SHARED = "shared"  # the same spec as another tensor (``ref[0]``)
DERIVED = "derived"  # bias: exponent = exponent(ref[0]) + exponent(ref[1]) (per channel)
FIXED = "fixed"  # constant exponent (e.g. GRU/LSTM gates 2^-9)
SOURCES = (OBSERVED, SHARED, DERIVED, FIXED)

#: Node precisions written to ``quant_type``.
S8, S16, F32 = "S8", "S16", "F32"
QUANT_TYPE_OF_BITS = {8: S8, 16: S16}
BITS_OF_QUANT_TYPE = {S8: 8, S16: 16}


@dataclass(frozen=True)
class TensorSpec:
    """Quantization of one tensor: ``bits`` wide integers times ``2**exponent``.

    ``exponent`` is an ``int`` (per tensor) or a tuple (per channel along ``axis``); ``None`` until
    calibrated. ``group`` names the set of tensors that must share one exponent (activations).
    """

    bits: int
    exponent: int | tuple[int, ...] | None = None
    axis: int | None = None
    source: str = OBSERVED
    ref: tuple[str, ...] = ()
    group: str | None = None

    @property
    def qmin(self) -> int:
        return -(1 << (self.bits - 1))

    @property
    def qmax(self) -> int:
        return (1 << (self.bits - 1)) - 1

    @property
    def per_channel(self) -> bool:
        return isinstance(self.exponent, tuple)

    def with_exponent(self, exponent: int | tuple[int, ...]) -> TensorSpec:
        return replace(self, exponent=exponent)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["ref"] = list(self.ref)
        if isinstance(self.exponent, tuple):
            d["exponent"] = list(self.exponent)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TensorSpec:
        exp = d.get("exponent")
        if isinstance(exp, list):
            exp = tuple(int(e) for e in exp)
        return cls(
            bits=int(d["bits"]),
            exponent=exp,
            axis=d.get("axis"),
            source=d.get("source", OBSERVED),
            ref=tuple(d.get("ref", ())),
            group=d.get("group"),
        )


@dataclass
class QuantPlan:
    """Everything needed to fake-quantize or export a graph.

    * ``node_types``: node name -> "S8" | "S16" | "F32" (the ``quant_type`` written to the file).
    * ``tensors``: tensor name -> spec of the tensor as produced (activations) or stored (parameters).
      Float tensors have no entry.
    * ``requant``: ``"<node>:<input index>"`` -> spec that consumer expects for that input when it differs
      from the tensor's own spec (a Requantize/Quantize step at export, a rounding step in simulation).
    * ``fused``: Conv/Gemm/MatMul node name -> name of the Relu fused into it at export.
    """

    target: str
    bits: int
    node_types: dict[str, str] = field(default_factory=dict)
    tensors: dict[str, TensorSpec] = field(default_factory=dict)
    requant: dict[str, TensorSpec] = field(default_factory=dict)
    fused: dict[str, str] = field(default_factory=dict)
    calib_algorithm: str = "kl"

    def spec(self, tensor: str) -> TensorSpec | None:
        return self.tensors.get(tensor)

    def input_spec(self, node: str, index: int, tensor: str) -> TensorSpec | None:
        """Spec a node sees on its input ``index`` (its requant spec, else the tensor's own)."""
        return self.requant.get(f"{node}:{index}", self.tensors.get(tensor))

    def exponent(self, tensor: str) -> int | tuple[int, ...] | None:
        s = self.tensors.get(tensor)
        return None if s is None else s.exponent

    def int16_nodes(self) -> list[str]:
        return [n for n, t in self.node_types.items() if t == S16]

    # ------------------------------------------------------------------ JSON
    def to_json(self) -> dict[str, Any]:
        return {
            "format": "espq-plan/1",
            "target": self.target,
            "bits": self.bits,
            "calib_algorithm": self.calib_algorithm,
            "node_types": dict(self.node_types),
            "fused": dict(self.fused),
            "tensors": {k: v.to_json() for k, v in self.tensors.items()},
            "requant": {k: v.to_json() for k, v in self.requant.items()},
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> QuantPlan:
        if d.get("format") != "espq-plan/1":
            raise ConfigError(
                f"not an espq plan (format {d.get('format')!r}); "
                "plans are written by QuantizedModel.save_plan"
            )
        return cls(
            target=d["target"],
            bits=int(d["bits"]),
            node_types=dict(d["node_types"]),
            tensors={k: TensorSpec.from_json(v) for k, v in d["tensors"].items()},
            requant={k: TensorSpec.from_json(v) for k, v in d["requant"].items()},
            fused=dict(d.get("fused", {})),
            calib_algorithm=d.get("calib_algorithm", "kl"),
        )

    def save(self, path: str | Path) -> None:
        from espq.utils import atomic_write_text

        atomic_write_text(path, json.dumps(self.to_json(), indent=1, sort_keys=True))

    @classmethod
    def load(cls, path: str | Path) -> QuantPlan:
        p = Path(path)
        try:
            data = json.loads(p.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read plan '{p}': {exc}") from exc
        return cls.from_json(data)

"""Check a `.espdl` model against what ESP-DL's loader and kernels require, listing every violation.

Rules and their sources (esp_dl_facts.md unless noted):

* structure (§2.1, §9): nodes in topological order, unique node names, every referenced tensor defined,
  op types registered (§3.1), a valid ``quant_type`` on every node (§2.2) that the op accepts (§3.2),
  parameter inputs are initializers (§3.2 "params");
* exponents (§3.2 exporter note, §4.2-§4.11): shift ``e_out - e_in - e_w >= 0`` for Conv/Gemm/MatMul/Mul
  (per channel too), one shared exponent where the kernel does not rescale (``EQUAL_EXPONENT_OPS``);
* parameters (§2.1, §2.4, §4.2, §9.5): >= 1 exponent, data of the right byte length, raw data padded to
  16 bytes, one consumer per parameter, Conv/Gemm bias INT32 (S8) / INT64 (S16) within the target's bias
  bits, per-channel exponents only for Conv/Gemm weights and biases on per-channel targets, Gemm weights
  ``[1, 1, C, N]``;
* LUTs (§3.3): the table's exponent equals the node's output exponent, 256 entries (int8) or
  65536/step + 1 entries with a power-of-two step (int16);
* activations (§2.1): a ValueInfo with exactly one exponent and the dtype of the producer's quant_type;
  graph inputs/outputs with static shapes;
* test values (§2.6): named after graph inputs / activations, same dtype, shape and exponent.

Espressif's own files (the zoo, ESP-PPQ 1.3.12 exports) store rank-0 parameters with ``dims = []``, which
esp-dl 3.3.x loaders crash on (§2.1); that rule is checked only with ``strict=True``.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict

from espq.errors import InvalidFileError, ValidationError
from espq.espdl.decode import MAX_ABS_EXPONENT
from espq.espdl.model import EspdlGraph, EspdlModel, EspdlNode, EspdlTensor, EspdlValueInfo
from espq.espdl.schema import TensorDataType as DT
from espq.ir.limits import size_message, too_large
from espq.ir.op_facts import OP_FACTS, ops_with
from espq.targets import EQUAL_EXPONENT_OPS, NONNEGATIVE_SHIFT_OPS, OP_TABLE, ExponentRule, Target, get_target

#: quant_type strings the loader understands, mapped to espq's names (§2.2; S32 is never used by kernels).
QUANT_TYPE_ALIASES = {
    "S8": "S8",
    "SYMM_S8": "S8",
    "S16": "S16",
    "SYMM_S16": "S16",
    "F32": "F32",
    "None": "F32",
}
#: activation dtype of each quant type (§2.4).
ACTIVATION_DTYPE = {"S8": DT.INT8, "S16": DT.INT16, "F32": DT.FLOAT}
#: bias storage dtype of each integer quant type (§2.4).
BIAS_DTYPE = {"S8": DT.INT32, "S16": DT.INT64}
BITS = {"S8": 8, "S16": 16}
#: ops whose kernels convert between representations: their activation dtypes are free (§4.9).
CONVERT_OPS = ops_with(converts=True)
#: int8 ops that switch to the LUT module when their ``lut`` attribute names an initializer (§3.3);
#: at int16 only ``LUT`` and ``Gelu`` read tables (op-facts table: ``reads_lut_bits``).
LUT_OPS_S8 = ops_with(reads_lut_bits=8)
LUT_OPS_S16 = ops_with(reads_lut_bits=16)
#: fused activations the conv-like kernels implement (§2.2, §4.2).
FUSED_ACTIVATIONS = frozenset({"Linear", "None", "Relu"})
INT_DTYPES = frozenset({DT.INT8, DT.INT16})


def resolve_target(model: EspdlModel, target: str | Target | None) -> Target | None:
    """The target to check against: ``target`` if given, else ``metadata_props["target"]``, else None."""
    name = target if target is not None else model.target
    return None if name is None else get_target(name)


def quant_type_of(node: EspdlNode) -> str | None:
    """The node's quant_type as "S8"/"S16"/"F32", None when missing or not understood by the loader."""
    q = node.attr("quant_type")
    return QUANT_TYPE_ALIASES.get(q) if isinstance(q, str) else None


def conv_out_channels(weight: EspdlTensor, node: EspdlNode) -> int | None:
    """Output channels N of a stored Conv/Gemm weight (dims per §2.5), None when the rank is unexpected."""
    dims = weight.dims
    if node.op_type == "Gemm" or int(node.attr("group", 1) or 1) == 1:
        return dims[-1] if len(dims) in (3, 4) else None
    return dims[-2] if len(dims) in (3, 4) else None  # depthwise: [H, W, N, C] / [W, N, C]


def _dt(code: int) -> str:
    try:
        return DT(code).name
    except ValueError:
        return f"data_type {code}"


class _Checker:
    def __init__(self, model: EspdlModel, target: Target | None, strict: bool):
        self.model = model
        self.g: EspdlGraph = model.graph
        self.target = target
        self.strict = strict
        self.out: list[str] = []
        self.vi: dict[str, EspdlValueInfo] = {}
        for v in self.g.value_info:
            self.vi.setdefault(v.name, v)
        self.inits = self.g.initializers

    def add(self, msg: str) -> None:
        self.out.append(msg)

    def where(self, node: EspdlNode) -> str:
        return f"node '{node.name}' ({node.op_type})"

    def exponent(self, tensor: str) -> list[int]:
        """Exponents of an initializer, or [e] of an activation (0 when unknown)."""
        if tensor in self.inits:
            return list(self.inits[tensor].exponents) or [0]
        v = self.vi.get(tensor)
        return [v.exponent] if v is not None else [0]

    # ------------------------------------------------------------------ graph structure
    def structure(self) -> None:
        g = self.g
        if not g.nodes:
            self.add(f"graph '{g.name}' has no nodes")
        defined: set[str] = set(self.inits)
        for v in g.inputs:
            if v.name in self.inits:
                self.add(f"graph input '{v.name}' is also an initializer; inputs must be activations")
            defined.add(v.name)
        produced_later = Counter(o for n in g.nodes for o in n.outputs if o)
        names = Counter(n.name for n in g.nodes)
        for name, count in names.items():
            if not name:
                self.add(f"{count} node(s) have an empty name; every node needs a unique name (§2.1)")
            elif count > 1:
                self.add(f"node name '{name}' is used by {count} nodes; node names must be unique (§2.1)")
        for node in g.nodes:
            for t in node.inputs:
                if not t or t in defined:
                    continue
                if produced_later[t]:
                    self.add(
                        f"{self.where(node)}: input '{t}' is produced by a later node; nodes must be "
                        "in topological order (ESP-DL runs them as stored, §2.1)"
                    )
                else:
                    self.add(
                        f"{self.where(node)}: input '{t}' is not defined (no graph input, initializer "
                        "or node output has this name)"
                    )
            if not node.outputs:
                self.add(f"{self.where(node)} has no outputs")
            for t in node.outputs:
                if t in defined:
                    self.add(
                        f"{self.where(node)}: output '{t}' is already defined; each tensor has one producer"
                    )
                defined.add(t)
                produced_later[t] -= 1
        for v in g.outputs:
            if v.name not in defined:
                self.add(f"graph output '{v.name}' is not produced by any node")

    def graph_io(self) -> None:
        for kind, lst in (("input", self.g.inputs), ("output", self.g.outputs)):
            if not lst:
                self.add(f"graph has no {kind}s")
            for v in lst:
                if v.name not in self.vi:
                    self.add(f"graph {kind} '{v.name}' has no ValueInfo in Graph.value_info (§2.1)")
                shape = v.shape
                if shape is None or any(not isinstance(d, int) or d <= 0 for d in shape):
                    self.add(
                        f"graph {kind} '{v.name}' has shape {shape}; graph inputs/outputs need static "
                        "positive dims (fix the model's input shape before export)"
                    )

    # ------------------------------------------------------------------ per node
    def node_rules(self, node: EspdlNode) -> None:
        spec = OP_TABLE.get(node.op_type)
        if spec is None:
            self.add(f"{self.where(node)}: op type '{node.op_type}' is not registered in ESP-DL (§3.1)")
        raw_q = node.attr("quant_type")
        qt = quant_type_of(node)
        if raw_q is None:
            self.add(f"{self.where(node)}: missing 'quant_type' attribute (S8/S16/F32, §2.2)")
            return
        if qt is None:
            self.add(f"{self.where(node)}: quant_type {raw_q!r} is not one of S8/S16/F32 (§2.2)")
            return
        if spec is None:
            return
        if qt not in {q.value for q in spec.quant_types}:
            allowed = "/".join(sorted(q.value for q in spec.quant_types))
            self.add(
                f"{self.where(node)}: quant_type {qt} is not supported by ESP-DL's {node.op_type} ({allowed})"
            )
        for i in spec.param_inputs:
            if i < len(node.inputs) and node.inputs[i] and node.inputs[i] not in self.inits:
                self.add(f"{self.where(node)}: input {i} '{node.inputs[i]}' must be an initializer (§3.2)")
        if node.op_type in ("Conv", "Gemm", "MatMul"):
            act = node.attr("activation", "Linear")
            if act not in FUSED_ACTIVATIONS:
                self.add(
                    f"{self.where(node)}: fused activation {act!r} has no kernel epilogue; "
                    "only Linear and Relu are implemented (§4.2)"
                )
        self.dtypes(node, qt, spec)
        if qt != "F32":
            lut = self.lut(node, qt)
            self.exponents(node, lut, spec)
            if node.op_type in ("Conv", "Gemm"):
                self.conv_params(node, qt)

    def dtypes(self, node: EspdlNode, qt: str, spec) -> None:
        if node.op_type in CONVERT_OPS:
            expected = None
        elif spec.bool_output:
            expected = DT.BOOL
        elif spec.float_output:
            expected = DT.FLOAT
        else:
            expected = ACTIVATION_DTYPE[qt]
        facts = OP_FACTS.get(node.op_type)
        fixed_outs = facts.fixed_exponent_outputs if facts is not None and qt != "F32" else frozenset()
        fixed_ins = facts.fixed_exponent_inputs if facts is not None and qt != "F32" else frozenset()
        for k, t in enumerate(node.outputs):
            v = self.vi.get(t)
            if v is None:
                if t:
                    self.add(f"{self.where(node)}: output '{t}' has no ValueInfo (dtype + exponent, §2.1)")
                continue
            want_k = DT.INT16 if k in fixed_outs else expected
            if want_k is not None and v.elem_type != want_k:
                self.add(
                    f"{self.where(node)}: output '{t}' is {_dt(v.elem_type)} but quant_type {qt} "
                    f"produces {_dt(want_k)} (§2.4)"
                )
            gate = node.attr("gate_exponent", -8)
            if k in fixed_outs and list(v.exponents) != [gate]:
                self.add(
                    f"{self.where(node)}: output '{t}' (int16 state) has exponents {list(v.exponents)}; "
                    f"the module asserts it equals gate_exponent [{gate}] (dl_module_lstm.hpp)"
                )
        if node.op_type in CONVERT_OPS:
            return
        for i, t in enumerate(node.inputs):
            v = self.vi.get(t) if t and t not in self.inits else None
            want = DT.INT16 if i in fixed_ins else ACTIVATION_DTYPE[qt]
            if v is not None and v.elem_type in (DT.INT8, DT.INT16, DT.FLOAT) and v.elem_type != want:
                self.add(
                    f"{self.where(node)}: input '{t}' is {_dt(v.elem_type)} but the node's quant_type "
                    f"{qt} expects {_dt(want)}; insert a Quantize/Requantize/DequantizeLinear node"
                )

    def lut(self, node: EspdlNode, qt: str) -> EspdlTensor | None:
        """Check the LUT the node uses (if any) and return it."""
        name = node.attr("lut")
        if not isinstance(name, str) or not name:
            if node.op_type in ("LUT", "Gelu"):
                self.add(f"{self.where(node)}: needs a 'lut' attribute naming its table initializer (§3.3)")
            return None
        t = self.inits.get(name)
        if t is None:
            self.add(f"{self.where(node)}: lut '{name}' is not an initializer (§3.3)")
            return None
        if node.op_type not in (LUT_OPS_S8 if qt == "S8" else LUT_OPS_S16):
            return None  # the module ignores the table (e.g. an int16 Sigmoid computes in float, §3.3)
        e_out = self.exponent(node.outputs[0])[0] if node.outputs else 0
        if list(t.exponents) != [e_out]:
            self.add(
                f"{self.where(node)}: lut '{name}' exponents {t.exponents} must equal the output "
                f"exponent [{e_out}] (the runtime asserts it, §3.3)"
            )
        want = ACTIVATION_DTYPE[qt]
        if t.data_type != want:
            self.add(f"{self.where(node)}: lut '{name}' is {_dt(t.data_type)}, a {qt} table is {_dt(want)}")
        n = t.numel
        if len(t.dims) != 1:
            self.add(f"{self.where(node)}: lut '{name}' has dims {t.dims}; tables are 1-D (§3.3)")
        if qt == "S8" and n != 256:
            self.add(f"{self.where(node)}: int8 lut '{name}' has {n} entries, needs 256 (§3.3)")
        if qt == "S16":
            step_ok = n >= 2 and (n - 1) & (n - 2) == 0 and (n - 1) <= 65536
            if not (step_ok or n == 65536):
                self.add(
                    f"{self.where(node)}: int16 lut '{name}' has {n} entries; needs 65536/step + 1 "
                    "with a power-of-two step (e.g. 257 for step 256, §3.3)"
                )
        return t

    def exponents(self, node: EspdlNode, lut: EspdlTensor | None, spec) -> None:
        if lut is not None:
            return  # a table maps every input code to the output exponent: no exponent relation (§3.3)
        op = node.op_type
        if op in NONNEGATIVE_SHIFT_OPS and len(node.inputs) >= 2 and node.outputs:
            e_in = self.exponent(node.inputs[0])[0]
            e_w = self.exponent(node.inputs[1])
            e_out = self.exponent(node.outputs[0])[0]
            bad = [(c, e_out - e_in - e) for c, e in enumerate(e_w) if e_out - e_in - e < 0]
            if bad:
                where = "" if len(e_w) == 1 else f" at {len(bad)} channel(s), first channel {bad[0][0]}"
                self.add(
                    f"{self.where(node)}: shift e_out - e_in - e_w = {e_out} - {e_in} - "
                    f"{e_w[bad[0][0]]} = {bad[0][1]} < 0{where}; the kernel only shifts right "
                    "(raise the output exponent or lower the weight exponent)"
                )
        rule = spec.exponent_rule
        rescaling_prelu = self.target is None or self.target.prelu_int8_rescales
        if op == "PRelu" and quant_type_of(node) == "S8" and rescaling_prelu:
            # the PIE int8 PRelu kernels rescale: Espressif's S3 face detector has e_in 2 -> e_out 1 (zoo
            # human_face_detect_mnp_s8_v1_s3); only the C / int16 kernels copy positives unchanged (§4.6)
            return
        if op in EQUAL_EXPONENT_OPS or rule is ExponentRule.EQUAL_INPUTS:
            tensors = [t for t in node.inputs if t and t not in self.inits]
            if rule is ExponentRule.EQUAL:
                tensors += [t for t in node.outputs if t]
            ints = [t for t in tensors if t in self.vi and self.vi[t].elem_type in INT_DTYPES]
            exps = {t: self.vi[t].exponent for t in ints}
            if len(set(exps.values())) > 1:
                listed = ", ".join(f"'{t}' {e}" for t, e in exps.items())
                self.add(
                    f"{self.where(node)}: {op} does not rescale, so its tensors need one exponent; "
                    f"got {listed} (insert a RequantizeLinear, §4.4/§4.10)"
                )

    def conv_params(self, node: EspdlNode, qt: str) -> None:
        w = self.inits.get(node.inputs[1]) if len(node.inputs) > 1 else None
        if w is None:
            return
        if node.op_type == "Gemm" and (len(w.dims) != 4 or w.dims[0] != 1 or w.dims[1] != 1):
            self.add(
                f"{self.where(node)}: Gemm weight '{w.name}' has dims {w.dims}; ESP-DL needs "
                "[1, 1, C, N] (§2.5)"
            )
        for key in ("transA", "transB"):
            if node.op_type == "Gemm" and node.attr(key, 0) not in (0, None):
                self.add(
                    f"{self.where(node)}: {key} = {node.attr(key)}; ESP-DL Gemm needs it absent or 0 (§2.5)"
                )
        if len(node.inputs) < 3 or not node.inputs[2] or node.inputs[2] not in self.inits:
            return
        b = self.inits[node.inputs[2]]
        want = BIAS_DTYPE[qt]
        if b.data_type != want:
            self.add(
                f"{self.where(node)}: bias '{b.name}' is {_dt(b.data_type)}; a {qt} {node.op_type} "
                f"needs {_dt(want)} (TensorBase::reset_bias_layout asserts it, §2.4)"
            )
        elif self.target is not None and b.numel:
            lo, hi = self.target.bias_range(BITS[qt])
            vals = b.values()
            vmin, vmax = int(vals.min()), int(vals.max())
            if vmin < lo or vmax > hi:
                self.add(
                    f"{self.where(node)}: bias '{b.name}' values [{vmin}, {vmax}] exceed the "
                    f"{self.target.bias_bits[BITS[qt]]}-bit bias range [{lo}, {hi}] of "
                    f"{self.target.name} (§2.4, §4.3)"
                )

    # ------------------------------------------------------------------ initializers
    def initializers(self) -> None:
        input_users: dict[str, set[str]] = defaultdict(set)
        lut_users: set[str] = set()
        for node in self.g.nodes:
            for t in node.inputs:
                if t in self.inits:
                    input_users[t].add(node.name)
            lut = node.attr("lut")
            if isinstance(lut, str):
                lut_users.add(lut)
        for name, t in self.inits.items():
            users = input_users.get(name, set())
            if len(users) > 1:
                self.add(
                    f"initializer '{name}' is an input of {len(users)} nodes ({', '.join(sorted(users))}); "
                    "ESP-DL keeps one parameter per consumer (duplicate it, §2.1)"
                )
            elif not users and name not in lut_users:
                self.add(f"initializer '{name}' is not used by any node (remove it)")
            self.tensor_data(t, f"initializer '{name}'")
            if not t.exponents:
                self.add(f"initializer '{name}' has no exponents; every parameter needs >= 1 (§2.1)")
            if self.strict and not t.dims:
                self.add(
                    f"initializer '{name}' has rank-0 dims []; esp-dl 3.3.x crashes on those, "
                    "write dims [1] (§2.1)"
                )
            if len(t.exponents) > 1:
                self.per_channel(name, t)

    def tensor_data(self, t: EspdlTensor, what: str) -> None:
        try:
            itemsize = t.dtype.itemsize
        except Exception:  # EspdlFormatError for STRING/UNDEFINED codes
            self.add(f"{what} has data_type {t.data_type}, which ESP-DL cannot use as numbers (§2.4)")
            return
        if t.data_field == "raw_data":
            if len(t.raw) != t.numel * itemsize:
                self.add(
                    f"{what}: raw data holds {len(t.raw)} bytes, dims {t.dims} x {_dt(t.data_type)} "
                    f"need {t.numel * itemsize}"
                )
            total = len(t.raw) + len(t.raw_padding)
            if t.raw_padding and (total % 16 or len(t.raw_padding) >= 16):
                self.add(
                    f"{what}: raw data of {len(t.raw)} bytes + {len(t.raw_padding)} padding bytes is not "
                    "padded to the next multiple of 16 (AlignedBytes, §1.4)"
                )
        elif t.data_field == "none" and t.numel:
            self.add(f"{what} has no data vector")

    def per_channel(self, name: str, t: EspdlTensor) -> None:
        users = [(n, n.inputs.index(name)) for n in self.g.nodes if name in n.inputs]
        n_exp = len(t.exponents)
        for node, idx in users:
            if node.op_type not in ("Conv", "Gemm") or idx not in (1, 2):
                self.add(
                    f"initializer '{name}' has {n_exp} exponents but is input {idx} of {self.where(node)}; "
                    "only Conv/Gemm weights and biases may be per channel (§2.3)"
                )
                continue
            if self.target is not None and not self.target.is_per_channel(node.op_type):
                self.add(
                    f"initializer '{name}' of {self.where(node)} has {n_exp} per-channel exponents; "
                    f"{self.target.name} kernels support per-tensor weights only (§4.2)"
                )
            w = self.inits.get(node.inputs[1])
            n_out = conv_out_channels(w, node) if w is not None else None
            if n_out is not None and n_exp != n_out:
                self.add(
                    f"initializer '{name}' of {self.where(node)} has {n_exp} exponents for {n_out} "
                    "output channels"
                )

    # ------------------------------------------------------------------ activations and test values
    def activations(self) -> None:
        names = dict.fromkeys(
            [v.name for v in self.g.inputs] + [o for n in self.g.nodes for o in n.outputs if o]
        )
        for name in names:  # a missing ValueInfo is reported by graph_io() / dtypes()
            v = self.vi.get(name)
            if v is not None and len(v.exponents) != 1:
                self.add(
                    f"activation '{name}' has {len(v.exponents)} exponents in its ValueInfo; "
                    "activations carry exactly one (§2.1)"
                )

    def exponent_ranges(self) -> None:
        g = self.g
        tensors = [("activation", v.name, v.exponents) for v in (*g.inputs, *g.outputs, *g.value_info)]
        for kind, group in (("initializer", g.initializers), ("test", {**g.test_inputs, **g.test_outputs})):
            tensors += [(kind, name, t.exponents) for name, t in group.items()]
        found = {}  # a graph input/output may also be listed in value_info: report it once
        for kind, name, exps in tensors:
            bad = [e for e in exps if abs(e) > MAX_ABS_EXPONENT]
            if bad:
                found.setdefault((kind, name), bad[0])
        for (kind, name), e in found.items():
            self.add(
                f"{kind} '{name}' has exponent {e}, outside [-{MAX_ABS_EXPONENT}, {MAX_ABS_EXPONENT}]; "
                "the reader rejects such files (check the calibration data's scale)"
            )

    def declared_sizes(self) -> None:
        """Data lengths of every initializer and test value, and declared shapes within the size limit."""
        g = self.g
        for name, t in g.initializers.items():
            self.tensor_data(t, f"initializer '{name}'")
        for kind, group in (("input", g.test_inputs), ("output", g.test_outputs)):
            for name, t in group.items():
                self.tensor_data(t, f"test {kind} '{name}'")
        seen = set()
        for v in (*g.inputs, *g.outputs, *g.value_info):
            shape = v.shape or []
            if v.name not in seen and all(isinstance(d, int) for d in shape) and too_large(shape):
                seen.add(v.name)
                self.add(size_message(f"activation '{v.name}'", shape))

    def test_values(self) -> None:
        g = self.g
        if not g.test_inputs and not g.test_outputs:
            return
        inputs = {v.name for v in g.inputs}
        for name in inputs - set(g.test_inputs):
            self.add(
                f"graph input '{name}' has no test input value; Model::test() needs one per input (§2.6)"
            )
        if not g.test_outputs:
            self.add("test inputs are present but no test outputs; Model::test() asserts at least one (§2.6)")
        for kind, tensors in (("input", g.test_inputs), ("output", g.test_outputs)):
            for name, t in tensors.items():
                what = f"test {kind} '{name}'"
                if kind == "input" and name not in inputs:
                    self.add(f"{what} is not named after a graph input (§2.6)")
                    continue
                v = self.vi.get(name)
                if v is None:
                    self.add(f"{what} names no activation with a ValueInfo (§2.6)")
                    continue
                self.tensor_data(t, what)
                if t.data_type != v.elem_type:
                    self.add(f"{what} is {_dt(t.data_type)} but the tensor is {_dt(v.elem_type)} (§2.6)")
                shape = v.shape or []
                if all(isinstance(d, int) for d in shape) and list(t.dims) != list(shape):
                    if not (shape == [] and t.dims == [1]):
                        self.add(f"{what} has dims {t.dims} but the tensor's shape is {shape} (§2.6)")
                e = t.exponents[0] if t.exponents else 0
                if e != v.exponent:
                    self.add(f"{what} has exponent {e} but the tensor's exponent is {v.exponent} (§2.6)")

    def run(self) -> list[str]:
        meta = self.model.target
        # Chips sharing one metadata name (every no-PIE chip writes "c") run the same kernels (§2.7).
        if (
            meta is not None
            and self.target is not None
            and get_target(meta).metadata_name != self.target.metadata_name
        ):
            self.add(
                f"metadata target '{meta}' differs from the requested target '{self.target.name}' "
                f"(which expects '{self.target.metadata_name}'); re-export for that target"
            )
        self.structure()
        self.graph_io()
        for node in self.g.nodes:
            self.node_rules(node)
        self.initializers()
        self.activations()
        self.exponent_ranges()
        self.test_values()
        return self.out


def violations(model: EspdlModel, target: str | Target | None = None, strict: bool = False) -> list[str]:
    """Every rule ``model`` breaks, as messages naming the node/tensor (empty list when valid).

    ``target``: check target-specific rules (bias bits, per-channel support) for this chip; default
    ``metadata_props["target"]``; with neither those rules are skipped. ``strict``: also reject rank-0
    parameter dims, which Espressif's own files contain but esp-dl 3.3.x loaders crash on.
    """
    return _Checker(model, resolve_target(model, target), strict).run()


def validate(
    model: EspdlModel | str | os.PathLike | bytes, target: str | Target | None = None, strict: bool = False
) -> None:
    """Raise :class:`espq.errors.ValidationError` listing every violation; return None when valid.

    ``model``: an :class:`EspdlModel`, a path or the file's bytes. See :func:`violations`.
    """
    from espq.espdl.files import read

    what = "model"
    if not isinstance(model, EspdlModel):
        what = f"'{model}'" if not isinstance(model, (bytes, bytearray, memoryview)) else "<bytes>"
        model = read(model)
    found = violations(model, target, strict)
    if found:
        raise ValidationError(found, what)


def load_violations(model: EspdlModel) -> list[str]:
    """The rules a file must meet before espq runs or inspects it (a subset of :func:`violations`):
    structure, static graph input/output shapes, one exponent per activation, exponents within
    ``[-MAX_ABS_EXPONENT, MAX_ABS_EXPONENT]``, data lengths that match dims, declared shapes within
    :mod:`espq.ir.limits`. The chip-specific rules (bias bits, LUT exponents, quant types) are left out:
    the integer runner reproduces what the chip does with such files."""
    c = _Checker(model, None, False)
    c.structure()
    c.graph_io()
    c.activations()
    c.exponent_ranges()
    c.declared_sizes()
    return c.out


def require_valid(model: EspdlModel, what: str = "model") -> None:
    """Raise :class:`espq.errors.InvalidFileError` (one line: the first violation and the count) when
    ``model`` breaks a :func:`load_violations` rule; the check the runner and ``inspect`` do on load."""
    found = load_violations(model)
    if found:
        raise InvalidFileError(found, what)

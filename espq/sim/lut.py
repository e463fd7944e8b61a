"""Look-up tables for unary activation/math ops (esp_dl_facts.md §3.3, esp_ppq_facts.md §4.7).

* int8: 256 entries; entry k is the op's output for input code k − 128.
* int16: ``65536 / step + 1`` entries; entry k is the output for input code −32768 + k·step; the
  runtime picks the *nearest* entry (ties: the target's ``lut_index_tie``), no interpolation.

Entries are computed exactly as the fake-quant simulator computes the op: the float kernel of
:data:`espq.sim.float.registry.KERNELS` on the dequantized input codes (float32), then rounding with
the target's mode and saturation to the output spec. So an int8 table and the simulator agree exactly.
For int16 LUT ops the simulator must reproduce the nearest-entry lookup: :func:`int16_lut_kernel`
is that kernel (see its docstring).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from espq.errors import ConfigError
from espq.ir import Node
from espq.ir.op_facts import ops_with
from espq.sim.float.executor import load_kernels
from espq.sim.float.registry import KERNELS, KernelFn
from espq.targets import Target
from espq.targets.rounding import dequantize, lut16_index, quantize

#: S8 ops the exporter replaces by a 256-entry table: the ops whose ESP-DL module switches to the table when
#: ``lut`` names an initializer (§3.3), plus Gelu (registered as the LUT module, it needs a table).
LUT8_OPS = ops_with(lut_bits=8)
#: S16 ops rewritten to op_type ``LUT`` (the S16 modules of the others compute directly; piecewise-linear
#: ops Relu/LeakyRelu/PRelu/Clip stay exact modules rather than lossy nearest-entry tables).
LUT16_OPS = ops_with(lut_bits=16)


def lut_codes(bits: int, step: int) -> np.ndarray:
    """The input codes a table covers: −128…127 (8-bit) or −32768, −32768+step, …, 32768 (16-bit)."""
    if bits == 8:
        return np.arange(-128, 128, dtype=np.int64)
    if isinstance(step, bool) or not isinstance(step, int) or step <= 0 or 65536 % step:
        raise ConfigError(f"int16_lut_step must be a power of two dividing 65536, got {step}")
    return np.arange(-32768, 32769, step, dtype=np.int64)


def build_table(
    op_type: str,
    attrs: dict,
    params: Sequence[torch.Tensor | None],
    in_exp: int,
    out_exp: int,
    bits: int,
    target: Target,
    step: int = 1,
) -> np.ndarray:
    """The integer table (int64 values, saturated to ``bits``) of a unary op.

    ``params``: the op's extra inputs as float tensors (already rounded, e.g. Clip bounds, PRelu slope),
    ``None`` for absent ones.
    """
    load_kernels()  # the float kernels register themselves on import
    codes = lut_codes(bits, step)
    x = torch.from_numpy(dequantize(codes, in_exp)).to(torch.float32)
    node = Node(f"{op_type}_lut", op_type, ["x"] + [f"p{i}" for i in range(len(params))], ["y"], dict(attrs))
    y = KERNELS[op_type](node, [x, *params])[0].to(torch.float32)
    return quantize(y.numpy(), out_exp, bits, target.rounding.value)


def lut16_lookup(q: np.ndarray, table: np.ndarray, target: Target) -> np.ndarray:
    """The runtime's int16 LUT: nearest entry of ``table`` for int16 codes ``q`` (§3.3)."""
    idx = lut16_index(np.asarray(q, dtype=np.int64), table.size, target.lut_index_tie.value)
    return table[np.clip(idx, 0, table.size - 1)]


def int16_lut_kernel(
    tables: dict[str, tuple[np.ndarray, int, int]], target: Target, base: KernelFn
) -> KernelFn:
    """A float-executor kernel reproducing int16 LUT nodes for the fake-quant simulator.

    ``tables``: node name -> (int table, input exponent, output exponent). For a listed node the input
    (fake-quantized float values on the 2^in_exp grid) is converted to its codes, looked up with the
    nearest-entry rule and dequantized with the output exponent; other nodes run ``base``. The
    simulator's output hook then rounds to the output spec, which leaves the table values unchanged.
    """

    def kernel(node: Node, inputs: list) -> list:
        entry = tables.get(node.name)
        if entry is None:
            return base(node, inputs)
        table, e_in, e_out = entry
        x = inputs[0]
        q = torch.round(torch.ldexp(x.double(), torch.tensor(-e_in, dtype=torch.float64))).to(torch.int64)
        y = lut16_lookup(q.cpu().numpy(), table, target)
        return [torch.from_numpy(dequantize(y, e_out)).to(x.dtype).to(x.device)]

    return kernel

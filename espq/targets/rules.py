"""Attribute constraint rules: one small function per ESP-DL restriction.

Each rule takes ``(node, graph)`` of a canonicalised ONNX-level graph and returns ``None`` when the node
is fine, or an :class:`~espq.targets.base.Issue` (reason + suggested fix). Rules read shapes from the
graph when they are known and stay silent when a needed shape is unknown. Sources are cited per rule
(``§`` numbers refer to research/esp_dl_facts.md unless marked esp_ppq).
"""

from __future__ import annotations

import math

import numpy as np

from espq.ir.graph import Graph, Node
from espq.targets.base import Issue

_FUSABLE_ACTIVATIONS = (None, "", "Linear", "None", "Relu")
_REEXPORT_PADS = "re-export the model with explicit pads (e.g. PyTorch padding=<int>, or onnxslim)"


def _const(graph: Graph, name: str) -> np.ndarray | None:
    return graph.initializers.get(name) if name else None


def _input(node: Node, i: int) -> str:
    return node.inputs[i] if len(node.inputs) > i else ""


# ----------------------------------------------------------------------------- Conv / pooling
def conv_rank(node: Node, graph: Graph) -> Issue | None:
    """Conv runs 1-D (NWC) and 2-D (NHWC) only (§3.2; ESP-PPQ rejects Conv3d filters, esp_ppq §4.6)."""
    shape = graph.shape(_input(node, 1))
    if shape is not None and len(shape) not in (3, 4):
        return Issue(
            f"{len(shape) - 2}-D convolution (weight shape {list(shape)}); ESP-DL runs 1-D and 2-D Conv only",
            "change the model to Conv1d/Conv2d (e.g. fold the extra dimension into the batch or channels)",
        )
    return None


def conv_group(node: Node, graph: Graph) -> Issue | None:
    """ESP-DL treats every group != 1 as depthwise (§3.2): the weight must be [N, 1, kH, kW] with N == group.

    The depthwise kernel maps output channel n to input channel n [infer from the [H, W, N, 1] filter
    dims, §2.5], so a channel multiplier (N = k * group, k > 1) is not representable.
    """
    group = int(node.attr("group", 1))
    shape = graph.shape(_input(node, 1))
    if group == 1 or shape is None:
        return None
    n_out, c_per_group = shape[0], shape[1]
    if c_per_group != 1:
        return Issue(
            f"grouped convolution (group={group}, {c_per_group} input channels per group); ESP-DL treats "
            "every group != 1 as depthwise",
            f"split it into {group} group-1 Convs joined by a Concat, or change the model to use group=1 "
            "or depthwise (group = channels) convolutions",
        )
    if n_out != group:
        return Issue(
            f"depthwise Conv with channel multiplier {n_out // group} (group={group}, {n_out} output "
            "channels); ESP-DL's depthwise kernel needs output channels == input channels == group",
            "use channel multiplier 1, e.g. a depthwise Conv followed by a 1x1 Conv",
        )
    return None


def explicit_pads(node: Node, graph: Graph) -> Issue | None:
    """ESP-DL reads ``pads`` only; ``auto_pad`` SAME_* would be ignored (§3.2 "attributes read")."""
    auto_pad = node.attr("auto_pad", "NOTSET")
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        return Issue(f"auto_pad={auto_pad} (ESP-DL reads only explicit pads)", _REEXPORT_PADS)
    return None


def fused_activation(node: Node, graph: Graph) -> Issue | None:
    """Only Linear and Relu epilogues exist for Conv/Gemm/MatMul (§2.2, §4.2)."""
    act = node.attr("activation")
    if act not in _FUSABLE_ACTIVATIONS:
        return Issue(
            f"fused activation {act!r}; ESP-DL Conv/Gemm/MatMul only fuse Relu",
            "keep the activation as a separate node (remove the 'activation' attribute)",
        )
    return None


def pool_rank(node: Node, graph: Graph) -> Issue | None:
    """Pooling is 1-D or 2-D (NWC/NHWC, §2.5, §4.7)."""
    kernel = node.attr("kernel_shape")
    if kernel is not None and len(kernel) not in (1, 2):
        return Issue(
            f"{len(kernel)}-D pooling (kernel_shape={list(kernel)}); ESP-DL pools 1-D and 2-D only",
            "change the model to 1-D/2-D pooling",
        )
    return None


def pool_ceil_mode(node: Node, graph: Graph) -> Issue | None:
    """``ceil_mode`` is ignored by ESP-DL (§3.2): flag it when it changes the output size."""
    if int(node.attr("ceil_mode", 0)) == 0:
        return None
    shape = graph.shape(_input(node, 0))
    kernel = node.attr("kernel_shape")
    if shape is None or kernel is None:
        return None
    k = len(kernel)
    strides = node.attr("strides", [1] * k)
    pads = node.attr("pads", [0] * (2 * k))
    for i in range(k):
        span = shape[2 + i] + pads[i] + pads[i + k] - kernel[i]
        if span % strides[i] != 0:
            return Issue(
                "ceil_mode=1 changes the output size; ESP-DL ignores ceil_mode (floor)",
                "re-export with ceil_mode=0 and add one pixel of explicit padding at the end where needed",
            )
    return None


def pool_dilations(node: Node, graph: Graph) -> Issue | None:
    """MaxPool dilations are not read by ESP-DL (§3.2)."""
    dil = node.attr("dilations")
    if dil is not None and any(d != 1 for d in dil):
        return Issue(f"MaxPool dilations={list(dil)} (not read by ESP-DL)", "use dilation 1")
    return None


def avgpool_count_include_pad(node: Node, graph: Graph) -> Issue | None:
    """ESP-DL divides every window by kH*kW, i.e. count_include_pad=1 (§4.7)."""
    pads = node.attr("pads", [])
    if int(node.attr("count_include_pad", 0)) == 0 and any(p != 0 for p in pads):
        return Issue(
            "count_include_pad=0 with non-zero pads; ESP-DL divides border windows by the full kernel area",
            "re-export with count_include_pad=1 (PyTorch AvgPool default) or without padding",
        )
    return None


# ----------------------------------------------------------------------------- Gemm / MatMul
def gemm_trans_a(node: Node, graph: Graph) -> Issue | None:
    """Gemm asserts transA == 0 (§2.5)."""
    if int(node.attr("transA", 0)) != 0:
        return Issue("Gemm transA=1 (ESP-DL requires transA=0)", "insert a Transpose before the Gemm input A")
    return None


def gemm_alpha_beta(node: Node, graph: Graph) -> Issue | None:
    """alpha/beta are not read by the runtime; ESP-PPQ asserts both are 1 (§2.5, esp_ppq §2.7)."""
    alpha, beta = float(node.attr("alpha", 1.0)), float(node.attr("beta", 1.0))
    if alpha != 1.0 or beta != 1.0:
        return Issue(
            f"Gemm alpha={alpha:g}, beta={beta:g} (ESP-DL ignores them and assumes 1)",
            "fold alpha into the weight B and beta into the bias C (scale the constants), then set both to 1",
        )
    return None


def gemm_bias_shape(node: Node, graph: Graph) -> Issue | None:
    """The Gemm bias is one value per output channel ([N], stored plain, §2.5)."""
    c_shape = graph.shape(_input(node, 2))
    if c_shape is None or math.prod(c_shape) <= 1:
        return None
    if any(d != 1 for d in c_shape[:-1]):
        return Issue(
            f"Gemm bias C of shape {list(c_shape)} is not one value per output channel",
            "add the non-per-channel part with a separate Add node",
        )
    return None


def matmul_rank(node: Node, graph: Graph) -> Issue | None:
    """MatMul supports up to 4-D operands with batch broadcasting (§3.2)."""
    for name in node.inputs[:2]:
        shape = graph.shape(name)
        if shape is not None and len(shape) > 4:
            return Issue(
                f"MatMul operand {name!r} has rank {len(shape)}; ESP-DL MatMul supports up to 4-D",
                "reshape the operands to at most 4-D (merge leading batch dimensions)",
            )
    return None


# ----------------------------------------------------------------------------- Resize
def _resize_factors(node: Node, graph: Graph) -> list[float] | None:
    scales = _const(graph, _input(node, 2))
    if scales is not None and scales.size:
        return [float(s) for s in scales.reshape(-1)]
    sizes = _const(graph, _input(node, 3))
    shape = graph.shape(_input(node, 0))
    if sizes is not None and shape is not None and sizes.size == len(shape):
        return [float(o) / float(i) for o, i in zip(sizes.reshape(-1), shape)]
    return None


def resize_mode(node: Node, graph: Graph) -> Issue | None:
    """Resize: nearest = asymmetric + floor; linear = half_pixel or align_corners; no cubic/roi/antialias
    (§3.2, §4.10). Nearest with half_pixel and round_prefer_* equals floor for integer up-scales."""
    if graph.opset < 11:
        return Issue(
            f"opset {graph.opset} Resize (scales at input 1); ESP-DL reads scales at input 2",
            "convert the model to opset >= 11 (onnx.version_converter) or re-export it",
        )
    mode = node.attr("mode", "nearest")
    ctm = node.attr("coordinate_transformation_mode", "half_pixel")
    if mode == "cubic":
        return Issue("Resize mode 'cubic' is not implemented in ESP-DL", "use mode 'linear' or 'nearest'")
    if ctm == "tf_crop_and_resize":
        return Issue(
            "Resize with roi (tf_crop_and_resize); ESP-DL ignores roi", "crop with Slice, then Resize"
        )
    if int(node.attr("antialias", 0)) != 0:
        return Issue("Resize antialias=1 is not implemented in ESP-DL", "re-export with antialias=0")
    if mode == "linear" and ctm not in ("half_pixel", "pytorch_half_pixel", "align_corners"):
        return Issue(
            f"linear Resize with coordinate_transformation_mode={ctm!r}; ESP-DL implements half_pixel "
            "and align_corners",
            "re-export with align_corners=False (half_pixel) or align_corners=True",
        )
    if mode == "nearest":
        nearest = node.attr("nearest_mode", "round_prefer_floor")
        if ctm == "asymmetric" and nearest == "floor":
            return None
        factors = _resize_factors(node, graph)
        if (
            ctm in ("half_pixel", "pytorch_half_pixel")
            and nearest in ("round_prefer_floor", "round_prefer_ceil")
            and factors is not None
            and all(f >= 1 and f == int(f) for f in factors)
        ):
            return None
        return Issue(
            f"nearest Resize with coordinate_transformation_mode={ctm!r}, nearest_mode={nearest!r}; "
            "ESP-DL computes src = floor(dst / scale) (asymmetric, floor)",
            "re-export with coordinate_transformation_mode='asymmetric' and nearest_mode='floor' "
            "(PyTorch's default for mode='nearest')",
        )
    return None


def resize_rank(node: Node, graph: Graph) -> Issue | None:
    """Resize runs on 3-D/4-D tensors only (esp_ppq §2.7, §9.2)."""
    shape = graph.shape(_input(node, 0))
    if shape is not None and len(shape) not in (3, 4):
        return Issue(
            f"Resize on a rank-{len(shape)} tensor; ESP-DL resizes 3-D/4-D tensors", "reshape to 4-D"
        )
    return None


# ----------------------------------------------------------------------------- others
def pad_mode(node: Node, graph: Graph) -> Issue | None:
    """Pad modes constant/edge/reflect; wrap is rejected; pads come from input 1, all axes (§3.2)."""
    mode = node.attr("mode", "constant")
    if mode not in ("constant", "edge", "reflect"):
        return Issue(
            f"Pad mode {mode!r} is not supported by ESP-DL", "use mode 'constant', 'edge' or 'reflect'"
        )
    if node.attr("pads") is not None and not _input(node, 1):
        return Issue(
            "Pad with a 'pads' attribute (opset < 11); ESP-DL reads pads from input 1",
            "convert the model to opset >= 11 (onnx.version_converter)",
        )
    if _input(node, 3):
        return Issue("Pad with an 'axes' input; ESP-DL reads pads for every axis", "give pads for all axes")
    return None


def gru_linear_before_reset(node: Node, graph: Graph) -> Issue | None:
    """ESP-DL's GRU implements linear_before_reset = 1 only (§3.2)."""
    if int(node.attr("linear_before_reset", 0)) != 1:
        return Issue(
            "GRU with linear_before_reset=0; ESP-DL implements linear_before_reset=1 only",
            "re-export with linear_before_reset=1 (PyTorch nn.GRU exports it that way)",
        )
    return None


def exporter_only(node: Node, graph: Graph) -> Issue | None:
    """Q/DQ/Requantize and LUT nodes are written by the exporter from power-of-two exponents; in an input
    model they carry ONNX scale/zero-point semantics ESP-DL ignores (§3.2, §4.9)."""
    return Issue(
        f"{node.op_type} in the input model; espq quantizes float models and inserts these nodes itself",
        "give espq the float model (remove Quantize/Dequantize pairs, e.g. export without fake quantization)",
    )

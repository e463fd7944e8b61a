"""Export ONNX models with the exponents of ESP-PPQ's reference `.espdl` files and list the differences.

Usage: python bench/export_vs_reference.py [--shared ../shared]

For each reference (streaming zoo pairs, MobileNetV2 × {esp32p4, esp32s3} 8 bit,
ResNet-20 × {esp32p4, esp32s3, c} × {8, 16} bits) the ONNX is
quantized with espq, the plan's exponents are replaced by the reference's (``plan_from_espdl``), the model
is exported in memory and compared field by field (``compare_models``). Prints one block per model.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import espq
from espq import espdl
from espq.export import build_espdl, compare_models, plan_from_espdl
from espq.quant.model import QuantizedModel


def cases(shared: Path) -> list[tuple[str, Path, Path, str, int, list[int]]]:
    out = []
    for tgt in ("esp32p4", "esp32s3"):
        onnx = shared / "espdl-zoo" / f"streaming_{tgt}_model.onnx"
        out.append((f"streaming_{tgt}", onnx, onnx.with_suffix(".espdl"), tgt, 8, [1, 16, 24]))
    for tgt in ("esp32p4", "esp32s3"):
        ref = shared / "reference" / f"mobilenetv2_{tgt}_s8" / f"mobilenetv2_{tgt}_s8.espdl"
        onnx = shared / "models" / "mobilenetv2_espdl_zoo_float.onnx"
        out.append((ref.stem, onnx, ref, tgt, 8, [1, 3, 224, 224]))
    for tgt in ("esp32p4", "esp32s3", "c"):
        for bits in (8, 16):
            ref = shared / "reference" / f"resnet20_{tgt}_s{bits}" / f"resnet20_{tgt}_s{bits}.espdl"
            out.append(
                (ref.stem, shared / "models" / "cifar10_resnet20.onnx", ref, tgt, bits, [1, 3, 32, 32])
            )
    return out


def run_case(onnx: Path, ref_path: Path, target: str, bits: int, shape: list[int]) -> tuple[dict, list[str]]:
    ref = espdl.read(ref_path)
    rng = np.random.default_rng(0)
    data = [rng.standard_normal(shape).astype(np.float32)]
    qm = espq.quantize(str(onnx), data, target=target, bits=bits, progress=False)
    plan, unmatched = plan_from_espdl(qm.graph, qm.plan, ref)
    ours = build_espdl(QuantizedModel(qm.graph, plan, qm.target))
    return compare_models(ours, ref), unmatched


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared")
    args = ap.parse_args()
    for name, onnx, ref, target, bits, shape in cases(args.shared):
        if not (onnx.exists() and ref.exists()):
            print(f"== {name}: missing files, skipped")
            continue
        diff, unmatched = run_case(onnx, ref, target, bits, shape)
        print(f"== {name} ({target}, {bits} bit): {len(unmatched)} plan tensors without a reference exponent")
        for key, lines in diff.items():
            print(f"  {key}: {len(lines)}")
            for line in lines[:12]:
                print(f"    {line}")


if __name__ == "__main__":
    main()

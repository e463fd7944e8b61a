"""Espressif's zoo MobileNetV2 `.espdl` files run by espq's bit-exact integer runner on the shared
ImageNet samples: top-1, and speed (images/s) against float torch inference of the float ONNX in the
same process.

Preprocessing as the zoo model expects: RGB 0–255, short side 256, center crop 224, (x − mean)/std with
mean 123.675/116.28/103.53, std 58.395/57.12/57.375; the runner quantizes the NCHW float input with the
file's input exponent and converts it to the file's NHWC layout.

    python bench/zoo_accuracy.py [--limit 500] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from accuracy import SHARED, load_task

import espq
from espq.sim.integer import IntegerRunner

ZOO = {
    "esp32p4": "imagenet_cls_mobilenetv2_s8_v1_p4.espdl",
    "esp32s3": "imagenet_cls_mobilenetv2_s8_v1_s3.espdl",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=500)
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads (busy-waiting threads hurt on a loaded box)"
    )
    ap.add_argument("--batch", type=int, default=25)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    task = load_task("mobilenetv2", args.limit)
    x, y = task["x"], task["y"]
    graph = espq.load(task["path"])
    t = time.perf_counter()
    float_logits = np.concatenate(
        [espq.run_float(graph, x[i : i + args.batch])[graph.outputs[0]] for i in range(0, len(x), args.batch)]
    )
    float_ips = len(x) / (time.perf_counter() - t)
    print(f"{len(x)} ImageNet samples, torch threads {args.threads}")
    print("| model | runner | top-1 % | images/s | float torch images/s (same process) |")
    print("|---|---|---|---|---|")
    print(
        f"| mobilenetv2_espdl_zoo_float.onnx | float | {100 * np.mean(float_logits.argmax(1) == y):.1f} | "
        f"{float_ips:.1f} | |"
    )
    for target, name in ZOO.items():
        runner = IntegerRunner(SHARED / "espdl-zoo" / name, target=target)
        out = runner.model.graph.outputs[0].name
        t = time.perf_counter()
        preds = []
        for i in range(len(x)):
            res = runner.run(x[i : i + 1])
            preds.append(np.asarray(res[out]).reshape(-1).argmax())
        ips = len(x) / (time.perf_counter() - t)
        print(
            f"| {name} | espq integer ({target}) | {100 * np.mean(np.array(preds) == y):.1f} | {ips:.1f} | "
            f"{float_ips:.1f} |"
        )


if __name__ == "__main__":
    main()

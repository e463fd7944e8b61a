"""Calibration cost: espq.quantize's calibration vs one float forward pass over the same batches.

ResNet-56 (CIFAR-10), 32 batches of 32 real calibration images; both timed in this process, best of
``--repeat`` interleaved runs each (the machine is shared and noisy: compare the ratio, not the seconds).

    python bench/calib_speed.py [--model resnet56] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time

import torch
from accuracy import load_task

import espq
from espq.quant.calibrate import collect_statistics
from espq.quant.quantize import plan_skeleton
from espq.sim.float import FloatSession
from espq.sim.memory import reuse_freed_memory
from espq.targets import get_target


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet56")
    ap.add_argument("--target", default="esp32s3")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (spinning threads distort timings on a shared 2-core machine)",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    task = load_task(args.model, limit=1)
    batches = task["calib"]
    graph = espq.load(task["path"], input_shape=task["shape"])
    session = FloatSession(graph)
    feeds = [{graph.inputs[0]: torch.as_tensor(b)} for b in batches]

    def float_pass() -> None:  # same memory reuse as the statistics pass (espq.sim.memory)
        with torch.no_grad(), reuse_freed_memory():
            for f in feeds:
                session.run_torch(f)

    _, skeleton = plan_skeleton(graph, get_target(args.target), 8, espq.QuantSetting())

    def stats_pass() -> None:
        collect_statistics(
            graph,
            skeleton.observed_tensors,
            ({k: v.numpy() for k, v in f.items()} for f in feeds),
            progress=False,
        )

    def full_quantize() -> None:
        espq.quantize(graph, batches, target=args.target, progress=False)

    steps = {"float forward": float_pass, "statistics pass": stats_pass, "espq.quantize": full_quantize}
    timings = dict.fromkeys(steps, float("inf"))
    for _ in range(args.repeat):  # interleaved, so a busy spell on the shared machine hits every step
        for name, fn in steps.items():
            t = time.perf_counter()
            fn()
            timings[name] = min(timings[name], time.perf_counter() - t)
    base = timings["float forward"]
    print(
        f"{args.model}, {len(batches)} batches x {len(batches[0])}, target {args.target}, "
        f"torch threads {torch.get_num_threads()}"
    )
    print(f"| step | seconds (best of {args.repeat}) | ratio to float forward |")
    print("|---|---|---|")
    for name, sec in timings.items():
        print(f"| {name} | {sec:.2f} | {sec / base:.2f} |")


if __name__ == "__main__":
    main()

"""Device check: the float executor, calibration and fake-quant simulator on CUDA vs the CPU.

Runs a random-weight MobileNetV2 (224×224) and reports the largest relative output difference of
``run_float(device="cuda")`` vs CPU, whether calibration on CUDA gives the same plan, and the fake-quant
output difference, plus images/s on both devices. Needs torch with CUDA; nothing from ../shared.

    python bench/gpu_check.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "api"))
from mobilenet_v2 import MobileNetV2  # noqa: E402

import espq  # noqa: E402
from espq.sim.float import FloatSession  # noqa: E402


def main() -> None:
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device")
    print("device:", torch.cuda.get_device_name(0), "torch", torch.__version__)
    torch.manual_seed(0)
    model = MobileNetV2().eval()
    graph = espq.load(model, input_shape=[1, 3, 224, 224])
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 3, 224, 224)).astype(np.float32)
    out = graph.outputs[0]
    ref = espq.run_float(graph, x)[out]
    got = espq.run_float(graph, x, device="cuda")[out]
    print(f"run_float cuda vs cpu: max |d| / max |ref| = {np.abs(got - ref).max() / np.abs(ref).max():.2e}")
    for device in ("cpu", "cuda"):
        session = FloatSession(graph, device=device)
        feeds = {graph.inputs[0]: torch.as_tensor(x).to(device)}
        with torch.no_grad():
            session.run_torch(feeds)
            if device == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            for _ in range(3):
                session.run_torch(feeds)
            if device == "cuda":
                torch.cuda.synchronize()
        print(f"float forward {device}: {3 * len(x) / (time.perf_counter() - t):.1f} images/s")
    calib = [rng.standard_normal((16, 3, 224, 224)).astype(np.float32) for _ in range(4)]
    q_cpu = espq.quantize(graph, calib, target="esp32s3", progress=False)
    q_gpu = espq.quantize(graph, calib, target="esp32s3", progress=False, device="cuda")
    same = q_cpu.plan.to_json() == q_gpu.plan.to_json()
    diff = [k for k, v in q_cpu.plan.tensors.items() if q_gpu.plan.tensors[k].exponent != v.exponent]
    print(f"calibration on cuda gives the same plan: {same} ({len(diff)} exponent(s) differ: {diff[:5]})")
    fq = q_cpu.run(x[:8])[out]
    feeds = {graph.inputs[0]: torch.as_tensor(x[:8]).cuda()}
    with torch.no_grad():
        fq_gpu = q_cpu.sim.run_torch(feeds, device="cuda")[out].cpu().numpy()
    e = q_cpu.plan.tensors[out].exponent
    codes = np.abs(np.round(fq / 2.0**e) - np.round(fq_gpu / 2.0**e))
    n_diff = int((codes > 0).sum())
    print(f"fake-quant cuda vs cpu: {n_diff} of {codes.size} output codes differ, max {codes.max()}")


if __name__ == "__main__":
    main()

"""Error-analysis speed: espq vs ESP-PPQ 1.3.12, MobileNetV2 224, 9 batches of 32 (ESP-PPQ's steps=8).

Both tools run on this machine, on the same images (../shared/data/imagenet-samples, resized to 256 and
center-cropped to 224, Espressif's normalisation). Calibration is not timed: each tool quantizes with 2
batches (minmax) first, then the graph-wise and the layer-wise analyses are timed separately, and the
values of ops both tools report are compared (ESP-PPQ samples 4096 elements per tensor in graph-wise).

ESP-PPQ runs in its own virtual environment, created when missing (torch pinned first, then esp-ppq):
``python -m venv VENV; VENV/bin/pip install torch==2.13.0; VENV/bin/pip install esp-ppq==1.3.12``.
Its layer-wise pass costs 2 full forwards per op per batch, whatever the op. On a slow machine run it on
fewer batches (``--esppq-layerwise-steps S``: S+1 batches) and/or fewer ops (``--esppq-layerwise-ops K``:
ESP-PPQ's own function restricted to K evenly spaced ops); its time is then scaled to all ops × 9 batches
and the output says so. The defaults (1 batch × 4 ops) keep the whole script under ~5 minutes on a
2-core machine; ``--esppq-layerwise-steps 8 --esppq-layerwise-ops 0`` runs ESP-PPQ's pass in full
(5 to 19 minutes more there, depending on the load:
ESP-PPQ's time is mostly page faults on a busy machine).

Both tools use 1 torch thread by default (``--threads``): on a shared machine, torch's multi-threaded
kernels wait for each other whenever another process takes a core, which made both tools several
times slower and the ratio meaningless (espq layer-wise 246 s at 2 threads beside another job vs 36 s
at 1 thread). Run: ``python bench/analysis_speed.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

import espq
from espq.analysis import analyse

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
MODEL = SHARED / "models" / "mobilenetv2_espdl_zoo_float.onnx"
MEAN, STD = np.array([123.675, 116.28, 103.53]), np.array([58.395, 57.12, 57.375])

ESPPQ_SCRIPT = r"""
import json, sys, time, warnings
import numpy as np, torch
warnings.filterwarnings("ignore")
torch.set_num_threads(int(sys.argv[6]))
from esp_ppq.api import espdl_quantize_onnx
from esp_ppq.api.setting import QuantizationSettingFactory
from esp_ppq.IR import QuantableOperation
from esp_ppq.quantization.analyse.graphwise import graphwise_error_analyse
from esp_ppq.quantization.analyse.layerwise import layerwise_error_analyse
onnx_path, data_path, out_path = sys.argv[1], sys.argv[2], sys.argv[5]
lw_steps, lw_ops = int(sys.argv[3]), int(sys.argv[4])
x = np.load(data_path)
bs = 32
batches = [torch.from_numpy(x[i:i + bs]) for i in range(0, len(x), bs)]
setting = QuantizationSettingFactory.espdl_setting(8)
setting.quantize_activation_setting.calib_algorithm = "minmax"  # calibration is not what is timed
graph = espdl_quantize_onnx(onnx_path, onnx_path + ".espdl", batches[:2], 2, [1, 3, 224, 224],
                            target="esp32p4", num_of_bits=8, setting=setting, error_report=False,
                            skip_export=True, device="cpu")
collate = lambda b: b.float()
t = time.perf_counter()
gw = graphwise_error_analyse(graph, running_device="cpu", dataloader=batches, collate_fn=collate, steps=8,
                             verbose=False)
t_gw = time.perf_counter() - t
computing = [op.name for op in graph.operations.values()
             if isinstance(op, QuantableOperation) and op.is_computing_op]
n_all = len(computing)
if 0 < lw_ops < n_all:  # ESP-PPQ's own function, restricted to evenly spaced ops (same cost per op)
    step = (n_all - 1) / max(lw_ops - 1, 1)
    keep = {computing[round(i * step)] for i in range(lw_ops)}
    QuantableOperation.is_computing_op = property(lambda self: self.name in keep)
t = time.perf_counter()
lw = layerwise_error_analyse(graph, dataloader=batches, collate_fn=collate, running_device="cpu",
                             steps=lw_steps, verbose=False)
t_lw = time.perf_counter() - t
json.dump({"graphwise_s": t_gw, "layerwise_s": t_lw, "layerwise_steps": lw_steps,
           "layerwise_ops_run": len(lw), "ops": n_all, "graphwise": gw, "layerwise": lw}, open(out_path, "w"))
"""


def load_images(n: int) -> np.ndarray:
    files = sorted((SHARED / "data" / "imagenet-samples").glob("*.JPEG"))
    if not files:
        raise SystemExit(f"no images under {SHARED / 'data' / 'imagenet-samples'}")
    out = []
    for k in range(n):
        img = Image.open(files[k % len(files)]).convert("RGB")
        w, h = img.size
        s = 256 / min(w, h)
        img = img.resize((max(256, round(w * s)), max(256, round(h * s))), Image.BILINEAR)
        w, h = img.size
        left, top = (w - 224) // 2, (h - 224) // 2
        a = np.asarray(img.crop((left, top, left + 224, top + 224)), dtype=np.float32)
        out.append(((a - MEAN) / STD).transpose(2, 0, 1))
    return np.stack(out).astype(np.float32)


def ensure_esppq(venv: Path) -> Path:
    py = venv / "bin" / "python"
    if py.exists() and subprocess.run([py, "-c", "import esp_ppq"], capture_output=True).returncode == 0:
        return py
    print(f"installing ESP-PPQ 1.3.12 into {venv} (torch 2.13.0 first) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([py, "-m", "pip", "install", "-q", "torch==2.13.0"], check=True)
    subprocess.run([py, "-m", "pip", "install", "-q", "esp-ppq==1.3.12"], check=True)
    return py


def run_espq(x: np.ndarray, batch: int, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    batches = [x[i : i + batch] for i in range(0, len(x), batch)]
    # minmax activation calibration on both sides (calibration is not timed; it makes the values comparable)
    setting = espq.QuantSetting(calib_algorithm="minmax")
    qm = espq.quantize(str(MODEL), batches[:2], target="esp32p4", bits=8, setting=setting, progress=False)
    out = {}
    for kind in ("graphwise", "layerwise"):
        t = time.perf_counter()
        rep = analyse(qm, batches, steps=8, kinds=(kind,), progress=False)
        out[f"{kind}_s"] = time.perf_counter() - t
        out[kind] = getattr(rep, kind)
    out["ops"] = len(rep.ops)
    out["unperturbed"] = rep.info.get("layerwise_unperturbed_ops", 0)
    return out


def run_esppq(py: Path, x: np.ndarray, lw_steps: int, lw_ops: int, threads: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="espq-bench-") as tmp:
        onnx_copy = Path(tmp) / "mobilenetv2.onnx"  # ESP-PPQ overwrites its input with the simplified model
        shutil.copy(MODEL, onnx_copy)
        data = Path(tmp) / "x.npy"
        np.save(data, x)
        script = Path(tmp) / "esppq_analysis.py"
        script.write_text(ESPPQ_SCRIPT)
        out = Path(tmp) / "out.json"
        env = dict(os.environ, PYTHONWARNINGS="ignore")
        subprocess.run(
            [py, str(script), str(onnx_copy), str(data), str(lw_steps), str(lw_ops), str(out), str(threads)],
            check=True,
            cwd=tmp,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        return json.loads(out.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--venv", default="/tmp/espq-bench-esppq", help="ESP-PPQ virtual environment")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument(
        "--esppq-layerwise-steps",
        type=int,
        default=0,
        help="ESP-PPQ layer-wise steps actually run (8 = all 9 batches; fewer are extrapolated to 9)",
    )
    ap.add_argument(
        "--esppq-layerwise-ops",
        type=int,
        default=4,
        help="run ESP-PPQ's layer-wise on this many evenly spaced ops and scale to all (0 = all ops)",
    )
    ap.add_argument("--threads", type=int, default=1, help="torch threads of each tool (see the docstring)")
    ap.add_argument("--skip-esppq", action="store_true")
    args = ap.parse_args()
    if not MODEL.exists():
        raise SystemExit(f"{MODEL} not found")
    x = load_images(9 * args.batch_size)
    ours = run_espq(x, args.batch_size, args.threads)
    print(f"espq: graphwise {ours['graphwise_s']:.1f} s, layerwise {ours['layerwise_s']:.1f} s", flush=True)
    if args.skip_esppq:
        return
    theirs = run_esppq(
        ensure_esppq(Path(args.venv)), x, args.esppq_layerwise_steps, args.esppq_layerwise_ops, args.threads
    )
    ran, ops_ran = theirs["layerwise_steps"] + 1, theirs["layerwise_ops_run"]
    scale = 9 / ran * theirs["ops"] / ops_ran
    lw_theirs = theirs["layerwise_s"] * scale
    note = (
        ""
        if scale == 1
        else f" measured on {ops_ran} of {theirs['ops']} ops × {ran} of 9 batches "
        f"({theirs['layerwise_s']:.1f} s), scaled ×{scale:.3g}: its cost is 2 full forwards per op per batch"
    )
    gw_ratio = theirs["graphwise_s"] / ours["graphwise_s"]
    lw_ratio = lw_theirs / ours["layerwise_s"]
    total_ratio = (theirs["graphwise_s"] + lw_theirs) / (ours["graphwise_s"] + ours["layerwise_s"])
    star = "*" if note else ""
    total_theirs, total_ours = theirs["graphwise_s"] + lw_theirs, ours["graphwise_s"] + ours["layerwise_s"]
    print()
    print(
        f"MobileNetV2 224, 9 batches × {args.batch_size}, {ours['ops']} ops, "
        f"{args.threads} torch thread(s), both tools on this machine"
    )
    print()
    print("| pass | ESP-PPQ 1.3.12 (s) | espq (s) | speed-up |")
    print("|---|---:|---:|---:|")
    print(f"| graphwise | {theirs['graphwise_s']:.1f} | {ours['graphwise_s']:.1f} | {gw_ratio:.1f}× |")
    print(f"| layerwise | {lw_theirs:.1f}{star} | {ours['layerwise_s']:.1f} | {lw_ratio:.1f}× |")
    print(f"| total | {total_theirs:.1f}{star} | {total_ours:.1f} | {total_ratio:.1f}× |")
    if note:
        print(f"\n* ESP-PPQ layerwise{note}")
    print(
        f"espq layerwise: {ours['unperturbed']} of {ours['ops']} ops left their outputs bit-identical "
        "(downstream not re-run)"
    )
    for kind in ("graphwise", "layerwise"):
        common = [n for n in theirs[kind] if n in ours[kind]]
        if common:
            diff = max(abs(theirs[kind][n] - ours[kind][n]) for n in common)
            worst = max(common, key=lambda n: abs(theirs[kind][n] - ours[kind][n]))
            print(
                f"{kind} values, {len(common)} common op(s): largest difference {diff * 100:.3f} points "
                f"({worst}: ESP-PPQ {theirs[kind][worst] * 100:.3f} %, espq {ours[kind][worst] * 100:.3f} %)"
            )


if __name__ == "__main__":
    main()

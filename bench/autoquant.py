"""espq AutoQuant against espq's fixed recipes on ResNet-20 / esp32s3 (CIFAR-10, ../shared).

Rows: the fixed recipes "espdl" (ESP-PPQ's defaults) and "best", then ``espq.autoquant`` with its default
space and staged search, once with ``workers=1`` and once with ``workers=2`` (process pool). Columns: the
output noise-to-signal ratio against the float model on the calibration batches (what AutoQuant
minimises) and on held-out validation images, top-1 on those images (fake-quant, which equals the chip
at int8), and wall time. The two AutoQuant runs must give the same top-K (checked); their wall-time ratio
is the parallel speed-up. Data as in bench/accuracy.py (calibration: the 1,000 calib images in a
RandomState(0) permutation).

    python bench/autoquant.py --batches 16 --limit 500
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import load_task  # noqa: E402

import espq  # noqa: E402
from espq.autoquant.runner import output_error  # noqa: E402
from espq.autoquant.space import Config, default_space  # noqa: E402


def small_space() -> list[Config]:
    """4 observers x equalization off/level 2 x bias correction off/on (16 configurations, no exponent
    search or int16 layers: the cheap knobs, for a loaded 2-core machine)."""
    return [
        Config(obs, eq, False, bc)
        for obs in ("kl", "minmax", "percentile", "mse")
        for eq in (None, (2, 10, 0.5))
        for bc in (False, True)
    ]


def _row(name: str, m: dict, secs: float, note: str) -> str:
    return f"| {name} | {m['nsr_cal']:.3e} | {m['nsr_val']:.3e} | {m['top1']:.2f} | {secs:.1f} | {note} |"


def _metrics(qm, calib: list[np.ndarray], x: np.ndarray, y: np.ndarray, float_graph) -> dict:
    xc = np.concatenate(calib)
    nsr_cal = output_error(qm.run(xc), espq.run_float(float_graph, xc))
    out = qm.run(x)
    nsr_val = output_error(out, espq.run_float(float_graph, x))
    top1 = float(np.mean(np.argmax(next(iter(out.values())), axis=1) == y) * 100)
    return {"nsr_cal": nsr_cal, "nsr_val": nsr_val, "top1": top1}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", default="esp32s3")
    ap.add_argument("--batches", type=int, default=16, help="calibration batches of 32 images")
    ap.add_argument("--limit", type=int, default=500, help="validation images")
    ap.add_argument("--max-evaluations", type=int, default=4)
    ap.add_argument("--workers", type=int, nargs="*", default=[1, 2])
    ap.add_argument("--space", choices=("default", "small"), default="default")
    ap.add_argument("--proxy-batches", type=int, default=2)
    ap.add_argument("--recipes", nargs="*", default=["espdl", "best"])
    args = ap.parse_args()

    task = load_task("resnet20", args.limit)
    calib, x, y = task["calib"][: args.batches], task["x"], task["y"]
    float_graph = espq.load(task["path"])
    xf = espq.run_float(float_graph, x)
    top1 = np.mean(np.argmax(next(iter(xf.values())), axis=1) == y) * 100
    print(f"float top-1 {top1:.2f} % on {len(y)} images", flush=True)
    rows = []
    space = default_space() if args.space == "default" else small_space()
    for recipe in args.recipes:
        t = time.perf_counter()
        qm = espq.quantize(task["path"], calib, args.target, recipe=recipe, progress=False)
        secs = time.perf_counter() - t
        rows.append((f"fixed recipe `{recipe}`", _metrics(qm, calib, x, y, float_graph), secs, ""))
        print(_row(*rows[-1]), flush=True)
    tops = {}
    for w in args.workers:
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            r = espq.autoquant(
                task["path"],
                calib,
                args.target,
                max_evaluations=args.max_evaluations,
                workers=w,
                space=space,
                proxy_batches=args.proxy_batches,
                run_dir=Path(tmp) / "run",
                log=print,
            )
            secs = time.perf_counter() - t
            tops[w] = [(c["hash"], c["score"]) for c in r.candidates]
            note = f"{r.runs} runs, {len({s['hash'] for s in r.summary})} configs; chose `{r.best['label']}`"
            rows.append((f"autoquant workers={w}", _metrics(r.model, calib, x, y, float_graph), secs, note))
            print(_row(*rows[-1]), flush=True)
    if len(tops) > 1:
        same = len({tuple(v) for v in tops.values()}) == 1
        print(f"same top-K for workers {sorted(tops)}: {same}")
    print(f"\nResNet-20 / {args.target} int8, {args.batches} x 32 calibration, {len(y)} validation images\n")
    print("| run | NSR calib | NSR val | top-1 % | wall s | notes |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(_row(*row))
    aq = {w: s for n, _, s, _ in rows for w in args.workers if n == f"autoquant workers={w}"}
    if 1 in aq and 2 in aq:
        print(f"\nworkers=2 speed-up: {aq[1] / aq[2]:.2f}x")


if __name__ == "__main__":
    main()

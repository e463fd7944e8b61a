"""Fit the per-chip latency model on Espressif's published model-zoo latencies; leave-one-out error.

Records: :data:`espq.targets.latency_table.PUBLISHED` (model-only single-core ms from each esp-dl
``models/<component>/README.md``, with the `.espdl` file each was measured with). The files are read from
``--zoo`` (default ``$ESPQ_REALMODEL_CACHE/esp-dl-zoo``, i.e. ``~/.cache/espq-realmodels/esp-dl-zoo``,
laid out as in the esp-dl repository); ``--esp-dl-git GIT_DIR`` fills missing files from a clone of
espressif/esp-dl at :data:`~espq.targets.latency_table.ESP_DL_COMMIT`.

Per target, the coefficients (ms per unit of each cost group of
:data:`~espq.targets.latency_table.GROUPS`) are the bounded least-squares fit of the **relative**
residuals (each record's row divided by its published ms, so a 2 ms model counts as much as a 26 s one),
every coefficient at least 0 or its :data:`~espq.targets.latency_table.FLOORS` value.
Errors reported: in-sample (the fit on every record), leave-one-out (refit without the record) and
leave-one-component-out (refit without every record of the same README component: the pico
cat/dog/hand/face detectors share one architecture, so plain leave-one-out is optimistic for them); then
the 12 single-kernel timings of esp-dl's operator_performance.md predicted by the model-level fit (held
out: small cache-resident kernels, so they test the per-group prices, not the whole-model totals).
Output is markdown (tables ready for the README).

    python bench/latency_fit.py [--esp-dl-git /path/to/esp-dl/.git] [--markdown] [--coefficients]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from scipy.optimize import nnls

from espq import espdl
from espq.targets import latency_table
from espq.targets.cost import node_costs
from espq.targets.latency import feature_vector, kernel_cost


def zoo_dir() -> Path:
    """``$ESPQ_REALMODEL_CACHE/esp-dl-zoo`` (default ``~/.cache/espq-realmodels/esp-dl-zoo``)."""
    cache = os.environ.get("ESPQ_REALMODEL_CACHE", str(Path.home() / ".cache" / "espq-realmodels"))
    return Path(cache) / "esp-dl-zoo"


def fetch_missing(zoo: Path, git_dir: Path) -> None:
    """Write every record's file missing under ``zoo`` from ``git_dir`` at ESP_DL_COMMIT."""
    for rec in latency_table.PUBLISHED:
        dest = zoo / rec.path
        if dest.exists():
            continue
        blob = subprocess.run(
            ["git", f"--git-dir={git_dir}", "show", f"{latency_table.ESP_DL_COMMIT}:{rec.path}"],
            check=True,
            capture_output=True,
        ).stdout
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_suffix(".tmp")
        tmp.write_bytes(blob)
        tmp.replace(dest)


def features(path: Path) -> np.ndarray:
    """Summed cost-group amounts of the model at ``path``."""
    return np.sum([feature_vector(c) for c in node_costs(espdl.read(path))], axis=0)


def fit(a: np.ndarray, ms: np.ndarray, floor: np.ndarray) -> np.ndarray:
    """Least squares of the relative residuals with every coefficient >= its floor (0 or FLOORS).

    Solved as NNLS on the excess over the floor; columns scaled to unit norm for conditioning (MACs
    ~1e9, node counts ~1e2). A group absent from every row keeps its floor.
    """
    w = a / ms[:, None]
    norms = np.linalg.norm(w, axis=0)
    norms[norms == 0] = 1.0
    excess, _ = nnls(w / norms, np.ones(len(ms)) - w @ floor)
    return floor + excess / norms


def held_out(a: np.ndarray, ms: np.ndarray, groups: list[str], floor: np.ndarray) -> np.ndarray:
    """Prediction of each row from a fit on the rows whose group label differs."""
    pred = np.empty(len(ms))
    labels = np.array(groups)
    for i in range(len(ms)):
        keep = labels != labels[i]
        pred[i] = a[i] @ fit(a[keep], ms[keep], floor)
    return pred


def main(argv: list[str] | None = None) -> int:
    """Fit per target, print the error table (and optionally the COEFFICIENTS literal)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--zoo", type=Path, default=None, help="esp-dl tree with the zoo files")
    ap.add_argument("--esp-dl-git", type=Path, default=None, help="esp-dl git dir to fetch files from")
    ap.add_argument("--coefficients", action="store_true", help="print the COEFFICIENTS literal")
    args = ap.parse_args(argv)
    zoo = args.zoo or zoo_dir()
    if args.esp_dl_git is not None:
        fetch_missing(zoo, args.esp_dl_git)
    missing = [r.path for r in latency_table.PUBLISHED if not (zoo / r.path).exists()]
    if missing:
        print(
            f"{len(missing)} zoo file(s) missing under {zoo} (use --esp-dl-git): {missing[:3]}",
            file=sys.stderr,
        )
        return 2
    rows = []
    coefs = {}
    for target in sorted({r.target for r in latency_table.PUBLISHED}):
        recs = [r for r in latency_table.PUBLISHED if r.target == target]
        a = np.array([features(zoo / r.path) for r in recs])
        ms = np.array([r.ms for r in recs])
        floors = latency_table.FLOORS.get(target, {})
        floor = np.array([floors.get(g, 0.0) for g in latency_table.GROUPS])
        coefs[target] = fit(a, ms, floor)
        insample = a @ coefs[target]
        loo = held_out(a, ms, [r.path for r in recs], floor)
        loco = held_out(a, ms, [r.component for r in recs], floor)
        for r, f, p, q in zip(recs, insample, loo, loco):
            rows.append((Path(r.path).stem, target, r.ms, f, p, q))
    print("| model | target | published ms | fit ms | LOO ms | LOO err | LOCO err |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for stem, target, ms, f, p, q in rows:
        err, lerr = 100 * (p / ms - 1), 100 * (q / ms - 1)
        print(f"| {stem} | {target} | {ms:.1f} | {f:.1f} | {p:.1f} | {err:+.0f} % | {lerr:+.0f} % |")
    for target in coefs:
        errs = np.array([(p / ms - 1) for _s, t, ms, _f, p, _q in rows if t == target])
        lerrs = np.array([(q / ms - 1) for _s, t, ms, _f, _p, q in rows if t == target])
        print(
            f"\n{target}: {len(errs)} records; LOO |err| median {100 * np.median(abs(errs)):.0f} %, "
            f"max {100 * abs(errs).max():.0f} %, within 30 %: {int((abs(errs) <= 0.3).sum())}/{len(errs)}; "
            f"LOCO |err| median {100 * np.median(abs(lerrs)):.0f} %, max {100 * abs(lerrs).max():.0f} %, "
            f"within 30 %: {int((abs(lerrs) <= 0.3).sum())}/{len(lerrs)}"
        )
    print("\nHeld-out single kernels (esp-dl operator_performance.md, int8 SIMD, not in the fit):\n")
    print("| target | kernel | input CxHxW | MACs | published us | predicted us | err |")
    print("|---|---|---|---:|---:|---:|---:|")
    for k in latency_table.KERNELS:
        cost = kernel_cost(k)
        pred = 1000 * feature_vector(cost) @ coefs[k.target]
        kind = ("dw" if k.depthwise else "conv") + f"{k.filter_nckk[2]}x{k.filter_nckk[3]}"
        shape = "x".join(map(str, k.input_chw))
        err = 100 * (pred / k.us - 1)
        print(f"| {k.target} | {kind} | {shape} | {cost.macs:,} | {k.us:.0f} | {pred:.0f} | {err:+.0f} % |")
    if args.coefficients:
        print("\n_COEFFICIENTS = {")
        for target, c in coefs.items():
            print(f'    "{target}": {{')
            print("".join(f'        "{g}": {v:.6g},\n' for g, v in zip(latency_table.GROUPS, c)) + "    },")
        print("}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

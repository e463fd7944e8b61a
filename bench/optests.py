"""Run the integer runner on every Espressif op-test file and print pass counts per (target, bits, op).

Usage::

    python bench/optests.py [--root ../shared/espdl-optests] [--ops Conv,Add] [--targets c,esp32p4] [-j 2]

Each `.espdl` under ``<root>/<target>_s<bits>/<Op>/`` embeds test inputs and the outputs ESP-PPQ
expects the chip to produce; ``check_test_values`` compares them with ESP-DL's rule (int8 exact,
int16 ±1, float 2e-5). Prints one line per (target, bits, op), then every failure with its reason.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "espdl-optests"


def check_one(path: str) -> tuple[str, bool, str]:
    """(path, passed, reason) for one file; exceptions become failures with their message."""
    from espq.sim.integer import check_test_values

    try:
        rep = check_test_values(path)
    except Exception as exc:  # noqa: BLE001 - a benchmark reports every failure
        return path, False, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    if rep.ok:
        return path, True, ""
    bad = [t for t in rep.tensors if not t.ok]
    reason = "; ".join(
        f"'{t.name}' {t.reason or f'{t.mismatches}/{t.numel} mismatches, max|d| {t.max_abs_diff:g}'}"
        for t in bad
    )
    return path, False, reason


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=ROOT)
    ap.add_argument("--ops", default="", help="comma-separated op folders (default: all)")
    ap.add_argument("--targets", default="", help="comma-separated targets (default: all)")
    ap.add_argument("-j", "--jobs", type=int, default=2)
    args = ap.parse_args(argv)
    if not args.root.is_dir():
        print(f"no op tests at {args.root}", file=sys.stderr)
        return 2
    ops = set(filter(None, args.ops.split(",")))
    targets = set(filter(None, args.targets.split(",")))
    files = []
    for d in sorted(args.root.iterdir()):
        tgt, _, bits = d.name.rpartition("_s")
        if not d.is_dir() or (targets and tgt not in targets):
            continue
        for f in sorted(d.glob("*/*.espdl")):
            if not ops or f.parent.name in ops:
                files.append(str(f))
    t0 = time.time()
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(pool.map(check_one, files, chunksize=4))
    counts: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    failures = []
    for path, ok, reason in results:
        p = Path(path)
        tgt, _, bits = p.parent.parent.name.rpartition("_s")
        key = (tgt, bits, p.parent.name)
        counts[key][0] += ok
        counts[key][1] += 1
        if not ok:
            failures.append((key, p.name, reason))
    print(f"{'target':<9} {'bits':>4}  {'op':<20} pass/total")
    for (tgt, bits, op), (ok, n) in sorted(counts.items()):
        flag = "" if ok == n else "  <--"
        print(f"{tgt:<9} {bits:>4}  {op:<20} {ok:>3}/{n:<3}{flag}")
    total_ok = sum(v[0] for v in counts.values())
    total = sum(v[1] for v in counts.values())
    print(f"\nTOTAL {total_ok}/{total} files pass ({time.time() - t0:.1f} s)")
    if failures:
        print(f"\n{len(failures)} failure(s):")
        for (tgt, bits, op), name, reason in failures:
            print(f"  {tgt}_s{bits}/{op}/{name}: {reason}")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())

"""Differential chain fuzzer, large tier: N random graphs, op × target × bits coverage table.

Usage: python bench/fuzz_chain.py N [--seed0 S] [--extended] [--save DIR] [--json FILE]

Graph ``i`` (seed ``S + i``) runs on target/width ``i mod 6``. Every mismatch or error is listed
with its seed; with ``--save`` it is shrunk to a minimal graph and written to DIR (ONNX + JSON).
"""

from __future__ import annotations

import argparse
import collections
import json
import time
import warnings

from espq.testing.fuzz import GraphSpec, as_dict, coverage_table, fuzz, run_case, save_regression, shrink


def main() -> int:
    """Run the fuzzer; exit 1 when anything disagreed."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", type=int)
    ap.add_argument("--seed0", type=int, default=0)
    ap.add_argument("--save", help="shrink failures and save them here (e.g. tests/fuzz_regressions)")
    ap.add_argument("--json", help="write every result record here")
    ap.add_argument("--extended", action="store_true", help="add the wider op set (fuzz.EXTRA_OPS)")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    start = time.perf_counter()
    results = fuzz(args.n, args.seed0, extended=args.extended)
    elapsed = time.perf_counter() - start
    print(coverage_table(results))
    counts = collections.Counter(r.status for r in results)
    print(
        f"\n{args.n} graphs in {elapsed:.1f} s: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    )
    reasons = collections.Counter(r.detail for r in results if r.status == "rejected")
    for reason, n in reasons.most_common():
        print(f"rejected by check ({n}): {reason}")
    bad = [r for r in results if r.status in ("mismatch", "error")]
    for r in bad:
        print(f"seed {r.seed} {r.target} s{r.bits} {r.ops}: {r.status}: {r.detail.splitlines()[-1]}")
        if args.save:
            small = shrink(GraphSpec.from_json(r.spec), r.target, r.bits, r.seed)
            print("  minimal:", save_regression(args.save, run_case(small, r.target, r.bits, r.seed), small))
    if args.json:
        with open(args.json, "w") as f:
            json.dump([as_dict(r) for r in results], f, indent=1)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())

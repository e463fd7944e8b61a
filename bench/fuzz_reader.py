"""Fuzz the .espdl reader: mutate real files and check that only EspdlFormatError escapes.

Usage: python bench/fuzz_reader.py MINUTES [--seed N] [--out DIR] [FILE ...]
       python bench/fuzz_reader.py --flips N [--seed N] [--trust]

Each mutated input must either raise EspdlFormatError or decode; a decoded model must re-encode,
and that encoding must decode and re-encode to the same bytes. Anything else (another exception, a
mismatch, a decode slower than ``--slow`` seconds) is saved to
``tests/espdl/crashers/<sha1>.espdl`` with a ``.txt`` report.

``--flips N``: N single-byte flips of the seed files, each read, validated and run (the embedded test
values through the integer runner, as ``espq run --check`` does). Every flip must end as: rejected by
the reader, rejected by validation (``InvalidFileError``), another clean EspqError, or a file that
validated and ran (outputs same as the unflipped file's, or changed); a traceback is a bug. ``--trust``
skips the explicit validation step (what a runner that trusts files does; for before/after counts).
"""

from __future__ import annotations

import argparse
import hashlib
import random
import time
import traceback
from collections import Counter
from pathlib import Path

import numpy as np

from espq import espdl
from espq.errors import EspdlFormatError

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_FILES = [
    "optest_esp32p4_gemm_ishap_1_16_kshap_16_16_relu_s8.espdl",
    "optest_c_gemm_ishap_1_31_kshap_32_31_relu_s8.espdl",
    "tutorial_3gemm_s3.espdl",
    "human_face_detect_msr_s8_v1_p4.espdl",
    "streaming_esp32s3_streaming_model.espdl",
]


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One random mutation: byte flips, truncation, 32-bit offset rewrite, chunk delete/duplicate."""
    buf = bytearray(data)
    kind = rng.randrange(5)
    if kind == 0:
        for _ in range(rng.randint(1, 16)):
            buf[rng.randrange(len(buf))] = rng.randrange(256)
    elif kind == 1:
        buf = buf[: rng.randrange(len(buf))]
    elif kind == 2:  # plausible-looking offsets/lengths at aligned positions
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(16, max(17, len(buf) - 4)) & ~3
            value = rng.choice(
                [0, 1, 4, 0xFFFFFFFF, 0x7FFFFFFF, rng.randrange(len(buf)), rng.randrange(1 << 32)]
            )
            buf[pos : pos + 4] = value.to_bytes(4, "little")
    elif kind == 3:
        a = rng.randrange(len(buf))
        del buf[a : a + rng.randint(1, 64)]
    else:
        a = rng.randrange(len(buf))
        buf[a:a] = buf[a : a + rng.randint(1, 64)]
    return bytes(buf)


def check(data: bytes, slow_s: float) -> str | None:
    """None when the reader behaves, else a description of the problem."""
    start = time.perf_counter()
    try:
        model = espdl.read(data)
    except EspdlFormatError as exc:
        return None if "offset" in str(exc) else f"EspdlFormatError without an offset: {exc}"
    except Exception:  # noqa: BLE001 - that is exactly what the fuzzer looks for
        return "read raised:\n" + traceback.format_exc()
    finally:
        if time.perf_counter() - start > slow_s:
            return f"read took {time.perf_counter() - start:.1f} s"  # noqa: B012
    try:
        out = espdl.write_bytes(model)
        again = espdl.write_bytes(espdl.read(out))
    except EspdlFormatError:
        return None  # the decoded content is not writable (reported cleanly)
    except Exception:  # noqa: BLE001
        return "write/re-read raised:\n" + traceback.format_exc()
    # compared as bytes: a corrupted float attribute may decode to NaN, which != itself
    return None if again == out else "write(read(write(model))) != write(model)"


#: target of each default seed file (the zoo files name none)
SEED_TARGETS = {
    "optest_esp32p4_gemm_ishap_1_16_kshap_16_16_relu_s8.espdl": "esp32p4",
    "optest_c_gemm_ishap_1_31_kshap_32_31_relu_s8.espdl": "c",
    "tutorial_3gemm_s3.espdl": "esp32s3",
    "human_face_detect_msr_s8_v1_p4.espdl": "esp32p4",
    "streaming_esp32s3_streaming_model.espdl": "esp32s3",
}


#: largest input (elements) the flip classifier feeds a file that has no test inputs
MAX_FED = 1 << 24


def run_outputs(data: bytes, target: str, trust: bool) -> tuple[str, dict | None]:
    """(outcome, raw outputs) of reading, validating and running one file's test inputs."""
    from espq.errors import EspqError, InvalidFileError
    from espq.espdl.validate import violations
    from espq.sim.integer import layout_replay as io
    from espq.sim.integer.runner import IntegerRunner

    try:
        model = espdl.read(data)
    except EspdlFormatError:
        return "rejected_read", None
    except Exception:  # noqa: BLE001 - that is exactly what the fuzzer looks for
        return "traceback:read\n" + traceback.format_exc(), None
    try:
        if not trust and violations(model, target):
            return "rejected_validation", None
        g = model.graph
        runner = IntegerRunner(model, target)
        feeds = {}
        for k, name in enumerate(runner.input_names):
            if name in g.test_inputs:  # the embedded test input, else fixed pseudo-random codes
                t = g.test_inputs[name]
                feeds[name] = t.values().reshape(t.dims)
                continue
            shape = io.static_shape(runner.values[name])
            if shape is None or int(np.prod(shape)) > MAX_FED:
                return "rejected_other", None  # the caller would have to allocate this input
            codes = np.random.default_rng(k).integers(-128, 128, shape)
            feeds[name] = codes.astype(io.np_dtype(runner.values[name].elem_type))
        got = runner.run_q(feeds, raw=True, outputs=list(g.test_outputs) or None)
        return "ran", {k: (q.exponent, q.data) for k, q in got.items()}
    except InvalidFileError:
        return "rejected_validation", None
    except EspqError:
        return "rejected_other", None
    except Exception:  # noqa: BLE001
        return "traceback:run\n" + traceback.format_exc(), None


def same(a: dict, b: dict) -> bool:
    """Raw outputs equal (names, exponents, dtypes, shapes, codes)."""
    if a.keys() != b.keys():
        return False
    return all(
        a[k][0] == b[k][0]
        and a[k][1].dtype == b[k][1].dtype
        and a[k][1].shape == b[k][1].shape
        and np.array_equal(a[k][1], b[k][1])
        for k in a
    )


def flips(n: int, seed: int, trust: bool, out: Path) -> None:
    """``--flips``: classify N single-byte flips (see the module docstring) and print the counts."""
    rng = random.Random(seed)
    seeds = []
    for name, target in SEED_TARGETS.items():
        p = ROOT.parent / "shared" / "espdl-zoo" / name
        if p.exists():
            data = p.read_bytes()
            outcome, ref = run_outputs(data, target, trust)
            if ref is None:
                raise SystemExit(f"seed {name} does not run: {outcome.splitlines()[0]}")
            seeds.append((name, data, target, ref))
    if not seeds:
        raise SystemExit("no seed files found under ../shared/espdl-zoo")
    counts: Counter = Counter()
    for _ in range(n):
        name, data, target, ref = rng.choice(seeds)
        buf = bytearray(data)
        pos = rng.randrange(len(buf))
        buf[pos] = (buf[pos] + rng.randrange(1, 256)) % 256  # always a different byte
        outcome, got = run_outputs(bytes(buf), target, trust)
        if outcome.startswith("traceback"):
            counts["traceback"] += 1
            out.mkdir(parents=True, exist_ok=True)
            key = hashlib.sha1(bytes(buf)).hexdigest()[:16]
            (out / f"{key}.espdl").write_bytes(bytes(buf))
            (out / f"{key}.txt").write_text(f"{name} byte {pos}\n{outcome}")
            print(f"traceback {key}: {name} byte {pos}: {outcome.splitlines()[-1]}")
        elif outcome == "ran":
            counts["ran_same_outputs" if same(got, ref) else "ran_changed_outputs"] += 1
        else:
            counts[outcome] += 1
    order = ("rejected_read", "rejected_validation", "rejected_other", "ran_same_outputs")
    order += ("ran_changed_outputs", "traceback")
    print(f"{n} single-byte flips (seed {seed}{', --trust' if trust else ''}):")
    for k in order:
        print(f"  {k}: {counts[k]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("minutes", type=float, nargs="?", default=1.0, help="how long to fuzz")
    ap.add_argument("files", nargs="*", type=Path, help="seed .espdl files (default: small zoo files)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "tests" / "espdl" / "crashers")
    ap.add_argument("--slow", type=float, default=5.0, help="seconds after which a decode counts as a hang")
    ap.add_argument("--flips", type=int, default=0, help="classify N single-byte flips instead")
    ap.add_argument("--trust", action="store_true", help="with --flips: skip the validation step")
    args = ap.parse_args()
    if args.flips:
        flips(args.flips, args.seed, args.trust, args.out)
        return
    files = args.files or [ROOT.parent / "shared" / "espdl-zoo" / f for f in DEFAULT_FILES]
    seeds = [p.read_bytes() for p in files if p.exists()]
    if not seeds:
        raise SystemExit(f"no seed files found: {[str(p) for p in files]}")
    rng = random.Random(args.seed)
    deadline = time.monotonic() + 60 * args.minutes
    runs = crashes = 0
    while time.monotonic() < deadline:
        data = rng.choice(seeds)
        for _ in range(rng.randint(1, 3)):
            data = mutate(data, rng) if data else data
        runs += 1
        problem = check(data, args.slow)
        if problem:
            crashes += 1
            args.out.mkdir(parents=True, exist_ok=True)
            name = hashlib.sha1(data).hexdigest()[:16]
            (args.out / f"{name}.espdl").write_bytes(data)
            (args.out / f"{name}.txt").write_text(problem)
            print(f"crasher {name}: {problem.splitlines()[0]}")
    print(f"{runs} inputs in {args.minutes:g} min, {crashes} crasher(s) saved to {args.out}")


if __name__ == "__main__":
    main()

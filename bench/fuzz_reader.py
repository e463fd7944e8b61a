"""Fuzz the .espdl reader: mutate real files and check that only EspdlFormatError escapes.

Usage: python bench/fuzz_reader.py MINUTES [--seed N] [--out DIR] [FILE ...]

Each mutated input must either raise EspdlFormatError or decode; a decoded model must re-encode,
and that encoding must decode and re-encode to the same bytes. Anything else (another exception, a
mismatch, a decode slower than ``--slow`` seconds) is saved to
``tests/espdl/crashers/<sha1>.espdl`` with a ``.txt`` report.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import time
import traceback
from pathlib import Path

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("minutes", type=float, help="how long to fuzz")
    ap.add_argument("files", nargs="*", type=Path, help="seed .espdl files (default: small zoo files)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "tests" / "espdl" / "crashers")
    ap.add_argument("--slow", type=float, default=5.0, help="seconds after which a decode counts as a hang")
    args = ap.parse_args()
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

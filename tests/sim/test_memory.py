"""reuse_freed_memory: a large tensor allocated again inside the block reuses freed pages (no page
faults), and glibc's defaults (a fresh mmap per large tensor) are back after the block.

Measured in a fresh interpreter: in a long-lived one, the first allocations inside the block may land
in free heap pages that an earlier block's ``malloc_trim`` returned to the system (each faults once).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from espq.sim import memory

N = 24 * 1024 * 1024  # 96 MiB of float32: above glibc's largest mmap threshold (32 MiB)
PAGES = N * 4 // 4096

SCRIPT = f"""
import json, resource, torch
from espq.sim.memory import reuse_freed_memory

def faults(times):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(times):
        torch.ones({N}).sum()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

out = {{"before": faults(3)}}
with reuse_freed_memory():
    with reuse_freed_memory():  # re-entrant: the inner block changes nothing
        pass
    faults(1)
    out["inside"] = faults(3)
out["after"] = faults(3)
print(json.dumps(out))
"""


def test_freed_pages_are_reused_inside_and_returned_after():
    if memory._glibc() is None:
        pytest.skip("not glibc, or malloc tunables set in the environment: the block does nothing")
    run = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True)
    faults = json.loads(run.stdout)
    assert faults["before"] > 2 * PAGES  # a fresh mmap for every allocation by default
    assert faults["inside"] < PAGES // 10  # the freed pages serve the next allocation
    assert faults["after"] > 2 * PAGES  # defaults restored on exit

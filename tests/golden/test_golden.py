"""Golden replay: exported bytes, plans and analysis numbers of fixed cases equal the recorded hashes."""

import pytest
from cases import CASES, case_id, load_golden, replay

GOLDEN = load_golden()


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_golden_replay(case):
    key = case_id(case)
    got = replay(case)
    if got is None:
        pytest.skip("model data (../shared/models) not present")
    assert key in GOLDEN, f"no golden hashes for {key}: run python tools/update_golden.py"
    changed = sorted(k for k in got if got[k] != GOLDEN[key].get(k))
    assert not changed, (
        f"{key}: {', '.join(changed)} changed. If intended, run python tools/update_golden.py and give the "
        "reason in the commit message; a 'no behaviour change' commit must not change them."
    )

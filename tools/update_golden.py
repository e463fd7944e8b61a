"""Regenerate tests/golden/golden.json (run after an intended behaviour change; say why in the commit)."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "golden"))
from cases import CASES, GOLDEN_FILE, case_id, load_golden, replay  # noqa: E402


def main() -> None:
    old = load_golden()
    new = {}
    for case in CASES:
        key = case_id(case)
        got = replay(case)
        if got is None:
            print(f"{key}: model absent, kept the old entry")
            if key in old:
                new[key] = old[key]
            continue
        changed = [k for k in got if old.get(key, {}).get(k) != got[k]]
        print(f"{key}: {'changed ' + ', '.join(changed) if changed else 'unchanged'}")
        new[key] = got
    GOLDEN_FILE.write_text(json.dumps(new, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()

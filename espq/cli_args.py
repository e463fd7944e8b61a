"""Command-line argument forms the README documents that click does not parse by itself.

* Multi-value options written once with several values (``--size 224 224``, ``--mean 0.5 0.5 0.5``,
  ``--input-shape 1 3 32 32``) are rewritten into the repeated form click understands (``--size 224
  --size 224``); repeating the flag keeps working.
* ``--input-shape`` groups stay together (``--input-shape 1 3 8 8 --input-shape 1 5`` = two inputs): each
  group becomes one comma-separated token, parsed by :func:`parse_input_shapes`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from espq.errors import ConfigError

#: Options that take several numbers after one flag.
NUMERIC_MULTI_OPTIONS = frozenset({"--size", "--mean", "--std"})
#: Options whose values form one group per flag (one tensor shape per input).
GROUPED_OPTIONS = frozenset({"--input-shape", "--streaming-input-shape"})

_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def expand_multi_value_options(args: Sequence[str]) -> list[str]:
    """``args`` with ``--opt a b c`` rewritten as ``--opt a --opt b --opt c`` (numeric options) or
    ``--opt a,b,c`` (grouped options); everything else, and anything after ``--``, unchanged."""
    out: list[str] = []
    i = 0
    args = list(args)
    while i < len(args):
        tok = args[i]
        if tok == "--":
            out.extend(args[i:])
            break
        name, eq, first = tok.partition("=")
        if name in NUMERIC_MULTI_OPTIONS | GROUPED_OPTIONS:
            values = [first] if eq else []
            j = i + 1
            if not eq:
                while j < len(args) and _NUMBER.match(args[j]):
                    values.append(args[j])
                    j += 1
            if not values:  # let click report the missing value
                out.append(tok)
                i += 1
                continue
            if name in GROUPED_OPTIONS:
                out += [name, ",".join(values)]
            else:
                for v in values:
                    out += [name, v]
            i = j
            continue
        out.append(tok)
        i += 1
    return out


def parse_input_shapes(tokens: Sequence[str] | None, option: str = "--input-shape") -> list | None:
    """The shape(s) given with ``option``: None, one shape ``[1, 3, 8, 8]`` or one per input.

    Each token is a group (``"1,3,8,8"``); tokens that are single numbers (the repeated-flag form
    ``--input-shape 1 --input-shape 3 ...``) together make one shape.
    """
    if not tokens:
        return None
    groups = [str(t).replace(" ", ",").split(",") for t in tokens]
    try:
        shapes = [[int(v) for v in g if v != ""] for g in groups]
    except ValueError:
        raise ConfigError(
            f"{option} takes integers, got {' '.join(map(str, tokens))!r}; e.g. {option} 1 3 224 224"
        ) from None
    if all(len(g) == 1 for g in groups):
        shapes = [[s[0] for s in shapes]]
    bad = [s for s in shapes if not s or any(d <= 0 for d in s)]
    if bad:
        raise ConfigError(f"{option}: every dimension must be a positive integer, got {bad[0]}")
    return shapes[0] if len(shapes) == 1 else shapes

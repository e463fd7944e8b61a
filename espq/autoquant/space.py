"""AutoQuant's search space: one :class:`Config` per combination of espq's accuracy knobs.

A configuration is plain data (observer, equalization level/iterations/threshold, exponent search, bias
correction, int16 layers chosen by :func:`espq.auto_mixed_precision`, or a whole recipe); two
configurations that would quantize the same way have the same :func:`Config.key` (a knob that is off
carries no parameters), so the search never runs one twice.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import asdict, dataclass
from typing import Any

from espq.errors import ConfigError
from espq.quant import EqualizationSetting, QuantSetting
from espq.quant.observers import OBSERVERS


@dataclass(frozen=True)
class Config:
    """One candidate quantization.

    * ``observer``: activation observer (:data:`espq.quant.observers.OBSERVERS`).
    * ``equalization``: ``None`` (off) or ``(opt_level, iterations, value_threshold)``.
    * ``exponent_search`` / ``bias_correction``: espq's steps on or off.
    * ``int16_layers``: 0, or the number of layers :func:`espq.auto_mixed_precision` may promote.
    * ``recipe``: ``None`` (the knobs above on the "espdl" base) or a recipe name ("best" chooses its
      own steps; the other knobs are then ignored and normalised away).
    """

    observer: str = "kl"
    equalization: tuple[int, int, float] | None = None
    exponent_search: bool = False
    bias_correction: bool = False
    int16_layers: int = 0
    recipe: str | None = None

    def __post_init__(self) -> None:
        if self.observer not in OBSERVERS:
            raise ConfigError(f"unknown observer {self.observer!r}; choose one of {', '.join(OBSERVERS)}")
        if self.recipe is not None:
            QuantSetting(recipe=self.recipe).validate()
        if self.int16_layers < 0:
            raise ConfigError(f"int16_layers must be >= 0, got {self.int16_layers}")
        if self.equalization is not None:
            level, iterations, threshold = self.equalization
            EqualizationSetting(opt_level=level, iterations=iterations, value_threshold=threshold).validate()

    def normalised(self) -> Config:
        """The same quantization with knobs a recipe decides dropped (so equal runs compare equal)."""
        if self.recipe is None:
            eq = None if self.equalization is None else tuple(self.equalization)
            return Config(self.observer, eq, self.exponent_search, self.bias_correction, self.int16_layers)
        return Config(self.observer, None, False, False, self.int16_layers, self.recipe)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON form (``equalization`` as a list or null)."""
        d = asdict(self.normalised())
        d["equalization"] = None if d["equalization"] is None else list(d["equalization"])
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Config:
        """Inverse of :meth:`to_json`."""
        d = dict(d)
        eq = d.get("equalization")
        d["equalization"] = None if eq is None else (int(eq[0]), int(eq[1]), float(eq[2]))
        return cls(**d)

    def key(self) -> str:
        """Stable hash of the normalised configuration (resume and de-duplication key)."""
        blob = json.dumps(self.to_json(), sort_keys=True).encode()
        return hashlib.sha1(blob).hexdigest()

    def label(self) -> str:
        """Short human-readable name."""
        c = self.normalised()
        if c.recipe is not None:
            parts = [f"recipe={c.recipe}", c.observer]
        else:
            parts = [c.observer]
            if c.equalization is not None:
                parts.append("eq(L{},{}it,t{:g})".format(*c.equalization))
            if c.exponent_search:
                parts.append("expsearch")
            if c.bias_correction:
                parts.append("biascorr")
        if c.int16_layers:
            parts.append(f"amp{c.int16_layers}")
        return "+".join(parts)

    def setting(self, base: QuantSetting | None = None) -> tuple[QuantSetting, str]:
        """The :class:`QuantSetting` and recipe name for ``espq.quantize`` (``base``: other fields kept,
        e.g. per-node precision; it is not modified)."""
        c = self.normalised()
        s = QuantSetting() if base is None else QuantSetting.from_json(base.to_json())
        s.calib_algorithm = c.observer
        if c.recipe is not None:
            s.recipe = c.recipe
            return s, c.recipe
        s.recipe = "espdl"
        s.equalization = c.equalization is not None
        if c.equalization is not None:
            level, iterations, threshold = c.equalization
            s.equalization_setting = EqualizationSetting(
                opt_level=level, iterations=iterations, value_threshold=threshold
            )
        s.exponent_search = c.exponent_search
        s.bias_correction = c.bias_correction
        return s, "espdl"


#: default grids (ESP-PPQ 1.3.12's AutoQuant: calib {kl, percentile, mse}, equalization iterations
#: {10, 50, 100} x threshold {0.1, 0.5, 2}; espq adds minmax, level 1 and its own steps)
OBSERVER_GRID = ("kl", "minmax", "percentile", "mse")
EQUALIZATION_GRID: tuple[tuple[int, int, float] | None, ...] = (
    None,
    (2, 10, 0.5),
    (2, 50, 0.5),
    (2, 10, 0.1),
    (2, 10, 2.0),
    (1, 10, 0.5),
)
INT16_GRID = (2, 4)


def default_space(mixed_precision: bool = True) -> list[Config]:
    """Every observer x equalization x exponent search x bias correction, the "best" recipe per observer,
    and (``mixed_precision``) each observer with 2 or 4 int16 layers; de-duplicated, in a fixed order."""
    configs = [
        Config(obs, eq, es, bc)
        for obs, eq, es, bc in itertools.product(
            OBSERVER_GRID, EQUALIZATION_GRID, (False, True), (False, True)
        )
    ]
    configs += [Config(obs, recipe="best") for obs in OBSERVER_GRID]
    if mixed_precision:
        configs += [Config(obs, int16_layers=k) for obs in OBSERVER_GRID for k in INT16_GRID]
    return unique(configs)


def unique(configs: list[Config]) -> list[Config]:
    """``configs`` normalised, first occurrence of each key kept, order kept."""
    seen: dict[str, Config] = {}
    for c in configs:
        seen.setdefault(c.key(), c.normalised())
    return list(seen.values())


__all__ = ["Config", "default_space", "unique"]

"""The registry of target records: ``TARGETS``, ``FAMILY_TARGETS`` and :func:`get_target`."""

from __future__ import annotations

from types import MappingProxyType

from espq.errors import ConfigError
from espq.targets.base import Target
from espq.targets.c import C_TARGETS
from espq.targets.esp32p4 import ESP32P4, ESP32S31
from espq.targets.esp32s3 import ESP32S3

#: Every target by chip name (esp_ppq §1.4: PIE v2 {esp32p4, esp32s31}, PIE v1 {esp32s3}, no PIE: the rest).
TARGETS: MappingProxyType[str, Target] = MappingProxyType(
    {t.name: t for t in (ESP32P4, ESP32S31, ESP32S3, *C_TARGETS)}
)

#: family -> the chip names in it, in registry order.
FAMILY_TARGETS: MappingProxyType[str, tuple[str, ...]] = MappingProxyType(
    {fam: tuple(n for n, t in TARGETS.items() if t.family == fam) for fam in ("p4", "s3", "c")}
)

_LOOKUP = {key: t for t in TARGETS.values() for key in (t.name, *t.aliases)}


def get_target(target: str | Target) -> Target:
    """The :class:`Target` for a chip name or alias (case-insensitive, ``-``/``_`` ignored).

    Raises :class:`espq.errors.ConfigError` listing the valid names for an unknown one.
    """
    if isinstance(target, Target):
        return target
    key = str(target).strip().lower()
    found = _LOOKUP.get(key) or _LOOKUP.get(key.replace("_", "").replace("-", ""))
    if found is None:
        raise ConfigError(
            f"unknown target {target!r}; valid targets: {', '.join(TARGETS)} "
            f"(aliases: {', '.join(k for k in _LOOKUP if k not in TARGETS)})"
        )
    return found

"""Bounds-checked, read-only access to a FlatBuffer (used by :mod:`espq.espdl.decode`).

Every read checks that the bytes it touches lie inside the buffer, so a corrupt payload raises
:class:`~espq.errors.EspdlFormatError` naming the byte offset (relative to the *file* start, using
``base``) instead of an ``IndexError``/``struct.error``. The ESP-DL loader itself does not verify
buffers (esp_dl_facts.md §2.0), so espq must.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from espq.errors import EspdlFormatError

_U8 = struct.Struct("<B")
_I8 = struct.Struct("<b")
_U16 = struct.Struct("<H")
_I32 = struct.Struct("<i")
_U32 = struct.Struct("<I")
_I64 = struct.Struct("<q")
_F32 = struct.Struct("<f")


class FbsBuffer:
    """A FlatBuffer payload plus the file offset it starts at (for error messages)."""

    def __init__(self, data: bytes | memoryview, base: int = 0, source: str = "<bytes>"):
        self.data = bytes(data)
        self.size = len(data)
        self.base = base
        self.source = source
        self.vtables: dict[int, tuple[bytes, int]] = {}  # vtable position -> (field offsets, object size)
        # A valid file copies each payload byte about once; vectors whose entries all point to one
        # large tensor or string would otherwise blow up memory, so copies are budgeted.
        self.copy_budget = 4 * self.size + (1 << 20)

    def error(self, pos: int, what: str) -> EspdlFormatError:
        """An EspdlFormatError for payload position ``pos``."""
        return EspdlFormatError(
            f"{self.source}: corrupt FlatBuffer payload at byte offset {self.base + pos} "
            f"(payload offset {pos}): {what}. The file is damaged or not an .espdl model; "
            "re-export it with espq or ESP-PPQ."
        )

    def check(self, pos: int, n: int, what: str) -> None:
        if pos < 0 or n < 0 or pos + n > self.size:
            raise self.error(pos, f"{what} needs {n} byte(s) but the payload has {self.size}")

    def unpack(self, fmt: struct.Struct, pos: int, what: str):
        self.check(pos, fmt.size, what)
        return fmt.unpack_from(self.data, pos)[0]

    def uoffset(self, pos: int, what: str) -> int:
        """Follow the uoffset stored at ``pos``; returns the absolute target position."""
        target = pos + self.unpack(_U32, pos, what)
        if target >= self.size:
            raise self.error(pos, f"{what} points to {target}, past the end of the payload ({self.size})")
        return target

    def legacy_vtables(self) -> bool:
        """True unless two vtables seen so far share field offsets but differ in object size, which
        only the flatbuffers >= 23 builder produces. When no such pair exists both de-duplication
        rules give the same bytes, so the legacy rule is a safe answer."""
        sizes: dict[bytes, int] = {}
        for fields, size in self.vtables.values():
            if sizes.setdefault(fields, size) != size:
                return False
        return True

    def root(self) -> Table:
        return self.table(self.uoffset(0, "root table offset"), "root table Model")

    def table(self, pos: int, what: str) -> Table:
        vt = pos - self.unpack(_I32, pos, f"{what} vtable offset")
        vt_size = self.unpack(_U16, vt, f"{what} vtable size")
        obj_size = self.unpack(_U16, vt + 2, f"{what} object size")
        if vt_size < 4 or vt_size % 2:
            raise self.error(vt, f"{what} has an invalid vtable size {vt_size}")
        self.check(vt, vt_size, f"{what} vtable")
        self.check(pos, max(obj_size, 4), f"{what} object")
        if vt not in self.vtables:
            self.vtables[vt] = (bytes(self.data[vt + 4 : vt + vt_size]), obj_size)
        return Table(self, pos, vt, vt_size, obj_size, what)

    def take(self, start: int, n: int, what: str) -> bytes:
        """Copy ``n`` bytes at ``start`` (already bounds-checked), charging the copy budget."""
        self.copy_budget -= n
        if self.copy_budget < 0:
            raise self.error(start, f"{what}: objects are referenced far more often than a valid file does")
        return bytes(self.data[start : start + n])

    def vector(self, pos: int, elem_size: int, what: str) -> tuple[int, int]:
        """(start, length) of the vector whose length word is at ``pos``."""
        n = self.unpack(_U32, pos, f"{what} length")
        self.check(pos + 4, n * elem_size, f"{what} ({n} elements of {elem_size} bytes)")
        return pos + 4, n


@dataclass
class Table:
    """One table: ``pos`` is the object start, ``vt`` its vtable."""

    buf: FbsBuffer
    pos: int
    vt: int
    vt_size: int
    obj_size: int
    what: str

    def field(self, slot: int, size: int) -> int | None:
        """Absolute position of field ``slot`` (``size`` bytes), or None when absent."""
        vo = 4 + 2 * slot
        if vo + 2 > self.vt_size:
            return None
        rel = self.buf.unpack(_U16, self.vt + vo, f"{self.what} vtable entry {slot}")
        if rel == 0:
            return None
        if rel + size > self.obj_size:
            raise self.buf.error(self.vt + vo, f"{self.what} field {slot} lies outside its object")
        return self.pos + rel

    def has(self, slot: int) -> bool:
        return self.field(slot, 1) is not None

    # -- scalars -------------------------------------------------------------------------------
    def _scalar(self, slot: int, fmt: struct.Struct, default):
        p = self.field(slot, fmt.size)
        return default if p is None else self.buf.unpack(fmt, p, f"{self.what} field {slot}")

    def u8(self, slot: int, default: int = 0) -> int:
        return self._scalar(slot, _U8, default)

    def i8(self, slot: int, default: int = 0) -> int:
        return self._scalar(slot, _I8, default)

    def i32(self, slot: int, default: int = 0) -> int:
        return self._scalar(slot, _I32, default)

    def i64(self, slot: int, default: int = 0) -> int:
        return self._scalar(slot, _I64, default)

    def f32(self, slot: int, default: float = 0.0) -> float:
        return self._scalar(slot, _F32, default)

    # -- references -----------------------------------------------------------------------------
    def _target(self, slot: int, what: str) -> int | None:
        p = self.field(slot, 4)
        return None if p is None else self.buf.uoffset(p, what)

    def string(self, slot: int, name: str) -> str | None:
        p = self._target(slot, f"{self.what}.{name}")
        return None if p is None else read_string(self.buf, p, f"{self.what}.{name}")

    def table(self, slot: int, name: str) -> Table | None:
        p = self._target(slot, f"{self.what}.{name}")
        return None if p is None else self.buf.table(p, f"{self.what}.{name}")

    def bytes_(self, slot: int, name: str, elem_size: int = 1) -> bytes | None:
        """Raw body bytes of a scalar/struct vector (``elem_size`` bytes per element)."""
        p = self._target(slot, f"{self.what}.{name}")
        if p is None:
            return None
        start, n = self.buf.vector(p, elem_size, f"{self.what}.{name}")
        return self.buf.take(start, n * elem_size, f"{self.what}.{name}")

    def array(self, slot: int, name: str, dtype: str) -> np.ndarray | None:
        dt = np.dtype(dtype)
        raw = self.bytes_(slot, name, dt.itemsize)
        return None if raw is None else np.frombuffer(raw, dtype=dt)

    def vector_start(self, slot: int, name: str, elem_size: int) -> tuple[int, int] | None:
        """(start, length) of a vector field, or None when absent."""
        p = self._target(slot, f"{self.what}.{name}")
        return None if p is None else self.buf.vector(p, elem_size, f"{self.what}.{name}")

    def tables(self, slot: int, name: str) -> list[Table] | None:
        vec = self.vector_start(slot, name, 4)
        if vec is None:
            return None
        start, n = vec
        return [
            self.buf.table(self.buf.uoffset(start + 4 * i, f"{name}[{i}]"), f"{self.what}.{name}[{i}]")
            for i in range(n)
        ]

    def strings(self, slot: int, name: str) -> list[str] | None:
        vec = self.vector_start(slot, name, 4)
        if vec is None:
            return None
        start, n = vec
        out = []
        for i in range(n):
            what = f"{self.what}.{name}[{i}]"
            out.append(read_string(self.buf, self.buf.uoffset(start + 4 * i, what), what))
        return out


def read_string(buf: FbsBuffer, pos: int, what: str) -> str:
    start, n = buf.vector(pos, 1, what)
    raw = buf.take(start, n, what)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise buf.error(start + exc.start, f"{what} is not valid UTF-8") from None

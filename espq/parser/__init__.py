"""ESP-PPQ's ``esp_ppq.parser.NativeExporter`` path (see :class:`NativeExporter`)."""

from espq.parser.native import NativeExporter

__all__ = ["NativeExporter"]

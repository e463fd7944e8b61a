"""ESP-PPQ's ``esp_ppq.parser.NativeExporter`` path (see :class:`NativeExporter`)."""

from espq.parser.native import NativeExporter, load_native_graph

__all__ = ["NativeExporter", "load_native_graph"]

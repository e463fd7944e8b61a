"""The `.espdl` file format: read, inspect and write ESP-DL model files.

Public API::

    read(source, key=None) -> EspdlModel                 # one EDL1/EDL2 model
    read_package(source, key=None) -> list[(name, EspdlModel)]   # PDL1/PDL2/PDL3 packages
    write_bytes(model, key=None) -> bytes                # EDL container + FlatBuffer
    write(model, path, key=None) -> None                 # atomic file write
    write_package_bytes(models, kind="PDL3", version="v1.0") -> bytes

``source`` is a path (str / os.PathLike) or the file's bytes. Every malformed input raises
:class:`espq.errors.EspdlFormatError` naming the byte offset where decoding failed.
"""

from espq.errors import EspdlFormatError
from espq.espdl.files import (
    MAX_ESPDL_BYTES,
    Source,
    max_espdl_bytes,
    read,
    read_package,
    write,
    write_bytes,
    write_package_bytes,
)
from espq.espdl.model import EspdlGraph, EspdlModel, EspdlNode, EspdlTensor, EspdlValueInfo
from espq.espdl.schema import AttributeType, TensorDataType
from espq.espdl.validate import validate

__all__ = [
    "AttributeType",
    "EspdlFormatError",
    "EspdlGraph",
    "EspdlModel",
    "EspdlNode",
    "EspdlTensor",
    "EspdlValueInfo",
    "MAX_ESPDL_BYTES",
    "Source",
    "TensorDataType",
    "max_espdl_bytes",
    "read",
    "read_package",
    "validate",
    "write",
    "write_bytes",
    "write_package_bytes",
]

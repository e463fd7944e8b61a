"""Calibration data from files: image folders (standard preprocessing), ``.npy`` and ``.npz``.

Used by the CLI (``--calib``) and available to scripts: ``load_calibration(path, ...)`` returns the
batches ready for :func:`espq.quantize` (an image folder's are decoded when used: :class:`ImageBatches`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from espq.errors import InputDataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")

#: PIL mode images are converted to, by the model input's channel count
IMAGE_MODES = {1: "L", 3: "RGB"}


def _image_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputDataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found under '{folder}'")
    return files


def load_image(
    path: Path,
    size: Sequence[int],
    mean: Sequence[float],
    std: Sequence[float],
    scale: float = 1.0,
    channels_last: bool = False,
    resize_short: int | None = None,
    channels: int = 3,
) -> np.ndarray:
    """One image → float32 array: converted to RGB (``channels`` 3) or grayscale ``"L"`` (1), optional
    short-side resize, center crop/resize to ``size`` (H, W), ``(x·scale − mean) / std`` per channel
    (``mean``/``std``: one value or one per channel), CHW (or HWC with ``channels_last``)."""
    from PIL import Image

    if channels not in IMAGE_MODES:
        raise InputDataError(
            f"images can feed a 1-channel (grayscale) or 3-channel (RGB) input, not {channels} channels; "
            "give the calibration data as a .npy/.npz instead"
        )
    for what, values in (("mean", mean), ("std", std)):
        if len(values) not in (1, channels):
            raise InputDataError(
                f"--{what} has {len(values)} values but the model input has {channels} channel(s); "
                f"give 1 or {channels} values"
            )
    try:
        img = Image.open(path).convert(IMAGE_MODES[channels])
    except Exception as exc:
        raise InputDataError(f"cannot read image '{path}': {exc}") from exc
    h, w = int(size[0]), int(size[1])
    if resize_short:
        s = resize_short / min(img.size)
        if s != 1.0:
            img = img.resize((round(img.size[0] * s), round(img.size[1] * s)), Image.BILINEAR)
    if img.size[0] >= w and img.size[1] >= h and resize_short:
        left, top = int(round((img.size[0] - w) / 2.0)), int(round((img.size[1] - h) / 2.0))
        img = img.crop((left, top, left + w, top + h))
    elif img.size != (w, h):
        img = img.resize((w, h), Image.BILINEAR)
    x = np.asarray(img, np.float32).reshape(img.size[1], img.size[0], channels) * scale
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return x if channels_last else x.transpose(2, 0, 1)


class ImageBatches(Sequence):
    """The batches of an image folder, each decoded when it is used: iterating ``steps`` batches decodes
    ``steps * batch_size`` images, and no more than one batch is held at a time (what the caller keeps
    aside)."""

    def __init__(self, files: list[Path], batch_size: int, load_args: tuple):
        self.files = list(files)
        self.batch_size = batch_size
        self.load_args = load_args

    def __len__(self) -> int:
        return -(-len(self.files) // self.batch_size)

    def __getitem__(self, index: int) -> np.ndarray:  # type: ignore[override]
        if isinstance(index, slice):
            raise TypeError("ImageBatches takes one batch index, not a slice")
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"batch {index} of {n}")
        start = (index % n) * self.batch_size
        chunk = self.files[start : start + self.batch_size]
        return np.stack([load_image(f, *self.load_args) for f in chunk])


def load_calibration(
    source: str | Path,
    batch_size: int = 32,
    size: Sequence[int] | None = None,
    mean: Sequence[float] = (0.0,),
    std: Sequence[float] = (1.0,),
    scale: float = 1.0 / 255.0,
    channels_last: bool = False,
    resize_short: int | None = None,
    limit: int | None = None,
    channels: int = 3,
) -> list[np.ndarray] | list[dict[str, np.ndarray]]:
    """Batches from an image folder, a ``.npy`` array (samples on axis 0) or a ``.npz`` (one array per
    input name, samples on axis 0). Images become ``channels`` channels (3: RGB, 1: grayscale; see
    :func:`model_image_channels`); an image folder gives an :class:`ImageBatches`, which decodes each
    batch when it is used (a folder of any size is never held in memory whole)."""
    path = Path(source)
    if not path.exists():
        raise InputDataError(f"calibration data '{path}' does not exist")
    if batch_size < 1:
        raise InputDataError(f"batch size must be >= 1, got {batch_size}")
    if path.is_dir():
        if size is None:
            raise InputDataError("image folders need --size H W (the model's input height and width)")
        files = _image_files(path)[:limit]
        return ImageBatches(
            files, batch_size, (size, mean, std, scale, channels_last, resize_short, channels)
        )
    if path.suffix == ".npy":
        arr = np.load(path, allow_pickle=False)[:limit]
        return [arr[i : i + batch_size] for i in range(0, len(arr), batch_size)]
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k][:limit] for k in z.files}
        n = min(len(a) for a in arrays.values())
        return [{k: a[i : i + batch_size] for k, a in arrays.items()} for i in range(0, n, batch_size)]
    raise InputDataError(f"'{path}': calibration data must be an image folder, a .npy or a .npz file")


def model_image_channels(model: str | Path, input_shapes: Sequence[Any] | None = None) -> int:
    """The channel count images must have for ``model``'s first input (NCHW: dimension 1).

    From ``input_shapes`` (the CLI's ``--input-shape``) when given, else from the ONNX file's first
    graph input (external data is not loaded); 3 (RGB) when neither says 1 or 3 (a 4-D shape with
    dimension 1 of 1 or 3 is needed; Keras/SavedModel inputs are not read here).
    """
    if input_shapes:  # one shape [1, 1, 28, 28] or one per input
        first = list(input_shapes if isinstance(input_shapes[0], int) else input_shapes[0])
        return _channels_of(len(first), int(first[1]) if len(first) > 1 else 0)
    path = Path(model)
    if path.suffix.lower() != ".onnx" or not path.is_file():
        return 3
    import onnx

    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception:  # noqa: BLE001 - an unreadable model is reported by the loader later
        return 3
    inits = {t.name for t in graph.initializer}
    inputs = [v for v in graph.input if v.name not in inits]
    if not inputs:
        return 3
    dims = inputs[0].type.tensor_type.shape.dim
    return _channels_of(len(dims), int(dims[1].dim_value) if len(dims) > 1 else 0)


def _channels_of(rank: int, dim1: int) -> int:
    """Dimension 1 of a 4-D NCHW input when it is an image channel count (1 or 3), else 3 (RGB).

    Any other value (an NHWC input's height, 4 channels) keeps RGB, the behaviour before channel counts
    were read.
    """
    return dim1 if rank == 4 and dim1 in IMAGE_MODES else 3

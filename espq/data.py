"""Calibration data from files: image folders (standard preprocessing), ``.npy`` and ``.npz``.

Used by the CLI (``--calib``) and available to scripts: ``load_calibration(path, ...)`` returns a list
of batches ready for :func:`espq.quantize`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from espq.errors import InputDataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


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
) -> np.ndarray:
    """One RGB image → float32 array: optional short-side resize, center crop/resize to ``size``
    (H, W), ``(x·scale − mean) / std`` per channel, CHW (or HWC with ``channels_last``)."""
    from PIL import Image

    try:
        img = Image.open(path).convert("RGB")
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
    x = np.asarray(img, np.float32) * scale
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return x if channels_last else x.transpose(2, 0, 1)


def load_calibration(
    source: str | Path,
    batch_size: int = 32,
    size: Sequence[int] | None = None,
    mean: Sequence[float] = (0.0, 0.0, 0.0),
    std: Sequence[float] = (1.0, 1.0, 1.0),
    scale: float = 1.0 / 255.0,
    channels_last: bool = False,
    resize_short: int | None = None,
    limit: int | None = None,
) -> list[np.ndarray] | list[dict[str, np.ndarray]]:
    """Batches from an image folder, a ``.npy`` array (samples on axis 0) or a ``.npz`` (one array per
    input name, samples on axis 0)."""
    path = Path(source)
    if not path.exists():
        raise InputDataError(f"calibration data '{path}' does not exist")
    if batch_size < 1:
        raise InputDataError(f"batch size must be >= 1, got {batch_size}")
    if path.is_dir():
        if size is None:
            raise InputDataError("image folders need --size H W (the model's input height and width)")
        files = _image_files(path)[:limit]
        arr = np.stack([load_image(f, size, mean, std, scale, channels_last, resize_short) for f in files])
        return [arr[i : i + batch_size] for i in range(0, len(arr), batch_size)]
    if path.suffix == ".npy":
        arr = np.load(path, allow_pickle=False)[:limit]
        return [arr[i : i + batch_size] for i in range(0, len(arr), batch_size)]
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k][:limit] for k in z.files}
        n = min(len(a) for a in arrays.values())
        return [{k: a[i : i + batch_size] for k, a in arrays.items()} for i in range(0, n, batch_size)]
    raise InputDataError(f"'{path}': calibration data must be an image folder, a .npy or a .npz file")

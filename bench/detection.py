"""Detection and OCR models with espq's default int8 against float (issue 20), through the exported file.

Rows (esp32p4 and esp32s3 int8, the default recipe, ``on_damage="warn"``; every quantized number comes
from the exported ``.espdl`` run in espq's bit-exact ESP-DL integer simulator):

* ``yolov8n`` (../shared/models/nudenet_yolov8n_320.onnx, 18 classes): the shared ImageNet samples
  resized to 320×320, RGB/255. Calibration: 8 batches × 4 images (the first 32 of a RandomState(0)
  permutation); evaluation on the next ``--limit`` images. Per anchor where float's best class score is
  > 0.25: % whose top class equals float's, % still > 0.25, mean |box − float box| in pixels (cx, cy, w,
  h), and how many images have such an anchor.
* ``ppocr_cls`` (ch_ppocr_mobile_v2.0_cls): text lines rendered with PIL (bench/accuracy.py's
  ``render_text_lines``, half rotated 180°): accuracy and agreement with float.
* ``ppocr_det`` (ch_PP-OCRv4_det, calibration 4 batches × 2 pages): 320×320 pages with 3–5 rendered
  text lines, ImageNet mean/std on RGB/255; text mask = probability > 0.3 (PaddleOCR's DB threshold);
  IoU with float's mask.
* ``ppocr_rec`` (ch_PP-OCRv4_rec, 6625 classes, blank = 0; calibration 16 lines, batch 1): rendered
  lines at 48×320 (height 48, aspect kept, right zero padding, (x/255 − 0.5)/0.5): % of float's
  non-blank frames whose argmax is the same, and % of lines whose greedy CTC decoding equals float's.

Each row also lists the quality gate's findings (kind, tensor, op) and what espq applied (output split).

    python bench/detection.py --models yolov8n --targets esp32p4 esp32s3 --limit 60
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from accuracy import SHARED, WORDS, render_text_lines
from PIL import Image, ImageDraw, ImageFont

import espq
from espq.quant.quality import QualityWarning
from espq.sim.integer import IntegerRunner

MODELS = SHARED / "models"
IMNET_MEAN, IMNET_STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


# ---------------------------------------------------------------------------- data
def yolo_images(limit: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Calibration batches and evaluation images for YOLOv8n (RGB/255 at 320×320)."""
    files = sorted((SHARED / "data" / "imagenet-samples").glob("*.JPEG"))
    order = np.random.RandomState(0).permutation(len(files))[: 32 + limit]

    def load(f: Path) -> np.ndarray:
        img = Image.open(f).convert("RGB").resize((320, 320), Image.BILINEAR)
        return (np.asarray(img, np.float32) / 255.0).transpose(2, 0, 1)

    x = np.stack([load(files[i]) for i in order])
    return [x[i * 4 : (i + 1) * 4] for i in range(8)], x[32:]


def text_pages(n: int, seed: int, size: int = 320) -> np.ndarray:
    """``n`` size×size pages with 3–5 dark text lines on light backgrounds (PP-OCR det input)."""
    rng = np.random.RandomState(seed)
    pages = []
    for _ in range(n):
        bg = int(rng.randint(190, 256))
        img = Image.new("RGB", (size, size), (bg, bg, bg))
        draw = ImageDraw.Draw(img)
        y = int(rng.randint(4, 30))
        for _ in range(int(rng.randint(3, 6))):
            font = ImageFont.load_default(size=int(rng.randint(18, 30)))
            text = " ".join(rng.choice(WORDS, size=rng.randint(1, 4)))
            fg = int(rng.randint(0, 70))
            draw.text((int(rng.randint(4, 60)), y), text, fill=(fg, fg, fg), font=font)
            y += int(rng.randint(40, 70))
            if y > size - 30:
                break
        x = np.asarray(img, np.float32) / 255.0
        pages.append(((x - IMNET_MEAN) / IMNET_STD).transpose(2, 0, 1).astype(np.float32))
    return np.stack(pages)


def rec_lines(n: int, seed: int, width: int = 320) -> np.ndarray:
    """``n`` upright text lines in PP-OCR rec's input form (3×48×width)."""
    rng = np.random.RandomState(seed)
    out = np.zeros((n, 3, 48, width), np.float32)
    for i in range(n):
        text = " ".join(rng.choice(WORDS, size=rng.randint(2, 5)))
        font = ImageFont.load_default(size=int(rng.randint(22, 34)))
        x0, y0, x1, y1 = ImageDraw.Draw(Image.new("RGB", (1, 1))).textbbox((0, 0), text, font=font)
        bg, fg = int(rng.randint(200, 256)), int(rng.randint(0, 60))
        img = Image.new("RGB", (x1 - x0 + 16, y1 - y0 + 12), (bg, bg, bg))
        ImageDraw.Draw(img).text((8 - x0, 6 - y0), text, fill=(fg, fg, fg), font=font)
        w, h = img.size
        new_w = min(width, max(1, int(np.ceil(48 * w / h))))
        x = np.asarray(img.resize((new_w, 48), Image.BILINEAR), np.float32)
        out[i, :, :, :new_w] = ((x / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)
    return out


# ---------------------------------------------------------------------------- metrics
def yolo_metrics(q: np.ndarray, f: np.ndarray, threshold: float = 0.25) -> dict:
    """Class agreement / box error per anchor where float's best class score > ``threshold``."""
    fs, qs = f[:, 4:], q[:, 4:]
    conf = fs.max(axis=1) > threshold  # (images, anchors)
    agree = fs.argmax(axis=1) == qs.argmax(axis=1)
    box = np.abs(q[:, :4] - f[:, :4]).mean(axis=1)
    return {
        "images": int(conf.any(axis=1).sum()),
        "anchors": int(conf.sum()),
        "agree %": 100.0 * float(agree[conf].mean()) if conf.any() else float("nan"),
        "alive %": 100.0 * float((qs.max(axis=1)[conf] > threshold).mean()) if conf.any() else float("nan"),
        "box px": float(box[conf].mean()) if conf.any() else float("nan"),
    }


def mask_iou(q: np.ndarray, f: np.ndarray, threshold: float = 0.3) -> float:
    a, b = q > threshold, f > threshold
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else float("nan")


def ctc_greedy(p: np.ndarray) -> list[tuple[int, ...]]:
    """Greedy CTC decoding of (lines, frames, classes) probabilities (blank 0, repeats merged)."""
    out = []
    for frames in p.argmax(axis=-1):
        keep = [int(c) for i, c in enumerate(frames) if c != 0 and (i == 0 or c != frames[i - 1])]
        out.append(tuple(keep))
    return out


def rec_metrics(q: np.ndarray, f: np.ndarray) -> dict:
    fa, qa = f.argmax(axis=-1), q.argmax(axis=-1)
    nonblank = fa != 0
    strings = [a == b for a, b in zip(ctc_greedy(q), ctc_greedy(f))]
    return {
        "frame agree %": 100.0 * float((fa == qa)[nonblank].mean()),
        "line agree %": 100.0 * float(np.mean(strings)),
    }


# ---------------------------------------------------------------------------- runs
def chip_outputs(path: Path, target: str, x: np.ndarray, output: str) -> np.ndarray:
    """``output`` of the exported file in the integer simulator, one sample at a time."""
    runner = IntegerRunner(path, target)
    return np.concatenate([runner.run(x[i : i + 1], outputs=[output])[output] for i in range(len(x))])


def float_outputs(graph, x: np.ndarray, output: str, batch: int = 8) -> np.ndarray:
    return np.concatenate(
        [espq.run_float(graph, x[i : i + batch], outputs=[output])[output] for i in range(0, len(x), batch)]
    )


def quantize_and_run(graph, calib, target: str, x: np.ndarray, output: str) -> tuple[np.ndarray, dict]:
    """Default int8 quantization, export, chip outputs; the gate's findings and what espq applied."""
    t0 = time.time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", QualityWarning)
        qm = espq.quantize(graph, calib, target=target, progress=False)
    seconds = time.time() - t0
    gate = qm.quality
    info = {
        "s": seconds,
        "findings": [f"{f.kind} '{f.tensor}' (op '{f.op}'): {f.damage}; fix: {f.fix}" for f in gate.findings],
        "applied": list(gate.applied),
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.espdl"
        qm.export(path)
        q = chip_outputs(path, target, x, output)
    return q, info


def task(model: str, limit: int) -> dict:
    """Graph, calibration batches, evaluation inputs, output name and metric of one row."""
    if model == "yolov8n":
        calib, x = yolo_images(limit)
        graph = espq.load(MODELS / "nudenet_yolov8n_320.onnx", input_shape=[1, 3, 320, 320])
        return dict(graph=graph, calib=calib, x=x, metric=yolo_metrics)
    if model == "ppocr_cls":
        x, y = render_text_lines(limit, seed=0)
        calib, _ = render_text_lines(64, seed=1)
        graph = espq.load(MODELS / "ch_ppocr_mobile_v2.0_cls_infer.onnx", input_shape=[1, 3, 48, 192])

        def cls_metrics(q: np.ndarray, f: np.ndarray) -> dict:
            qa, fa = q.reshape(len(y), -1).argmax(1), f.reshape(len(y), -1).argmax(1)
            return {
                "float acc %": 100.0 * float(np.mean(fa == y)),
                "acc %": 100.0 * float(np.mean(qa == y)),
                "agree %": 100.0 * float(np.mean(qa == fa)),
            }

        return dict(graph=graph, calib=[calib[i : i + 8] for i in range(0, 64, 8)], x=x, metric=cls_metrics)
    if model == "ppocr_det":
        x, calib = text_pages(limit, seed=0), text_pages(8, seed=1)
        graph = espq.load(MODELS / "ch_PP-OCRv4_det_infer.onnx", input_shape=[1, 3, 320, 320])
        return dict(
            graph=graph,
            calib=[calib[i : i + 2] for i in range(0, 8, 2)],
            x=x,
            metric=lambda q, f: {"mask IoU": mask_iou(q, f), "float text %": 100.0 * float(np.mean(f > 0.3))},
        )
    if model == "ppocr_rec":
        x, calib = rec_lines(limit, seed=0), rec_lines(16, seed=1)
        graph = espq.load(MODELS / "ch_PP-OCRv4_rec_infer.onnx", input_shape=[1, 3, 48, 320])
        # batch 1: the model's Reshapes hold the batch size it was loaded with
        return dict(graph=graph, calib=[c[None] for c in calib], x=x, metric=rec_metrics, batch=1)
    raise SystemExit(f"unknown model {model!r}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["yolov8n", "ppocr_cls", "ppocr_det", "ppocr_rec"])
    ap.add_argument("--targets", nargs="+", default=["esp32p4", "esp32s3"])
    ap.add_argument("--limit", type=int, default=40, help="evaluation samples per model")
    args = ap.parse_args()
    for model in args.models:
        t = task(model, args.limit)
        output = t["graph"].outputs[0]
        f = float_outputs(t["graph"], t["x"], output, t.get("batch", 8))
        print(f"== {model}: {len(t['x'])} samples, output '{output}' {list(f.shape[1:])}", flush=True)
        for target in args.targets:
            q, info = quantize_and_run(t["graph"], t["calib"], target, t["x"], output)
            numbers = ", ".join(f"{k} {v:.4g}" for k, v in t["metric"](q, f).items())
            print(f"{target} int8: {numbers}; quantize {info['s']:.0f} s", flush=True)
            for line in info["applied"]:
                print(f"  applied: {line}")
            for line in info["findings"] or ["gate: no finding"]:
                print(f"  {line}")


if __name__ == "__main__":
    main()

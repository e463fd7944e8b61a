"""Accuracy of espq's recipes against float and ESP-PPQ 1.3.12's default, on real data.

Rows: CIFAR-10 ResNet-20/56 (../shared/data/cifar10/val), the zoo-derived MobileNetV2 on the shared
ImageNet samples, the PP-OCR text-direction classifier on text lines rendered with PIL (half rotated
180°); each for esp32p4 and esp32s3 int8. Columns: float top-1; ESP-PPQ default top-1 in its own
fake-quant simulation (../shared/reference/*/result.json, split A; "n/a" where no reference run exists)
and on the chip (its exported .espdl from ../shared/reference run through espq's bit-exact ESP-DL
integer simulator); espq ``espdl`` and ``best`` on the chip the same way (each recipe's export); and the
output noise-to-signal ratio against the float model (sum (q − f)² / sum f² over all evaluated
outputs) of each chip run. ``--amp`` adds the automatic mixed-precision comparison on MobileNetV2.

``tvmobilenetv2`` is torchvision's ImageNet MobileNetV2 (ReLU6; ../shared/models/torchvision_mobilenet_v2-
b0353104.pth in :mod:`espq.testing.models`), the ESP-DL tutorial's model, on the shared ImageNet samples with
torchvision's preprocessing; besides recipes, ``--recipes`` takes the tutorial's two settings (both on
"espdl"): ``seed-int16`` (features.1's depthwise Conv and its ReLU6 at int16) and ``seed-eq`` (ReLU6 ->
ReLU, equalization opt_level 2, 6 iterations, threshold 0.5). Its NSR and agreement are against the
ReLU6 float model for every column.

    python bench/accuracy.py --models tvmobilenetv2 --recipes espdl,seed-int16,seed-eq,best --limit 100

Preprocessing and calibration as in ../shared/reference/RESULTS.md: CIFAR RGB/255 normalised with the
ImageNet mean/std, calibration = the 1,000 calib images in a RandomState(0) permutation, 32 batches × 32
(cycled); ImageNet center crop 224 of the 256-short-side samples, (x − mean)/std on 0–255
(torchvision's model: x/255 then its mean/std), calibration 16 × 32 from the 500 samples in a
RandomState(0) permutation (cycled). PP-OCR: PaddleOCR's cls
preprocessing (height 48, width ≤ 192 keeping aspect, right zero padding, (x/255 − 0.5)/0.5).

    python bench/accuracy.py --models resnet20 --targets esp32p4 --limit 500
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

import espq
from espq.quant.equalization import EqualizationSetting
from espq.sim.integer import IntegerRunner
from espq.testing.models import IMAGENET_MEAN, IMAGENET_STD, torchvision_mobilenet_v2

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CIFAR_MEAN, CIFAR_STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
IMNET_MEAN, IMNET_STD = np.array([123.675, 116.28, 103.53]), np.array([58.395, 57.12, 57.375])
#: the ESP-DL tutorial's two int16 layers of torchvision's MobileNetV2 (quantize_torch_model.py)
SEED_INT16_NODES = (
    "/features/features.1/conv/conv.0/conv.0.0/Conv",
    "/features/features.1/conv/conv.0/conv.0.2/Clip",
)
#: the tutorial's equalization setting (ReLU6 -> ReLU, opt_level 2, 6 iterations, threshold 0.5)
SEED_EQUALIZATION = EqualizationSetting(opt_level=2, iterations=6, value_threshold=0.5, clip_to_relu=True)
WORDS = (
    "the quick brown fox jumps over lazy dog espressif quantization int8 model chip memory "
    "camera voice label price total date invoice number street city code sensor power"
).split()


# ---------------------------------------------------------------------------- data
def _cifar_dir(split: str) -> tuple[list[Path], list[int]]:
    root = SHARED / "data" / "cifar10" / split
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    files, labels = [], []
    for k, c in enumerate(classes):
        for f in sorted((root / c).glob("*.jpg")):
            files.append(f)
            labels.append(k)
    return files, labels


def _cifar_image(path: Path) -> np.ndarray:
    x = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
    return ((x - CIFAR_MEAN) / CIFAR_STD).transpose(2, 0, 1).astype(np.float32)


def _imagenet_image(path: Path) -> np.ndarray:
    img = Image.open(path).convert("RGB")
    w, h = img.size
    if min(w, h) != 256:
        s = 256 / min(w, h)
        img = img.resize((round(w * s), round(h * s)), Image.BILINEAR)
        w, h = img.size
    left, top = int(round((w - 224) / 2.0)), int(round((h - 224) / 2.0))
    x = np.asarray(img.crop((left, top, left + 224, top + 224)), dtype=np.float32)
    return ((x - IMNET_MEAN) / IMNET_STD).transpose(2, 0, 1).astype(np.float32)


def _torchvision_image(path: Path) -> np.ndarray:
    """torchvision's ImageNet eval transform (resize 256, center crop 224, x/255 then mean/std)."""
    x = _imagenet_image(path) * IMNET_STD[:, None, None] + IMNET_MEAN[:, None, None]  # the 0-255 crop
    mean, std = np.array(IMAGENET_MEAN)[:, None, None], np.array(IMAGENET_STD)[:, None, None]
    return ((x / 255.0 - mean) / std).astype(np.float32)


def _ocr_image(img: Image.Image) -> np.ndarray:
    w, h = img.size
    new_w = min(192, max(1, int(np.ceil(48 * w / h))))
    x = np.asarray(img.convert("RGB").resize((new_w, 48), Image.BILINEAR), dtype=np.float32)
    x = (x / 255.0 - 0.5) / 0.5
    out = np.zeros((3, 48, 192), dtype=np.float32)
    out[:, :, :new_w] = x.transpose(2, 0, 1)
    return out


def render_text_lines(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` text lines rendered with PIL's default font; odd ones rotated 180° (label 1)."""
    rng = np.random.RandomState(seed)
    xs, ys = [], []
    for i in range(n):
        text = " ".join(rng.choice(WORDS, size=rng.randint(2, 5)))
        font = ImageFont.load_default(size=int(rng.randint(22, 34)))
        x0, y0, x1, y1 = ImageDraw.Draw(Image.new("RGB", (1, 1))).textbbox((0, 0), text, font=font)
        bg, fg = int(rng.randint(200, 256)), int(rng.randint(0, 60))
        img = Image.new("RGB", (x1 - x0 + 16, y1 - y0 + 12), (bg, bg, bg))
        ImageDraw.Draw(img).text((8 - x0, 6 - y0), text, fill=(fg, fg, fg), font=font)
        label = i % 2
        if label:
            img = img.rotate(180)
        xs.append(_ocr_image(img))
        ys.append(label)
    return np.stack(xs), np.array(ys)


def _batches(x: np.ndarray, steps: int, batch: int) -> list[np.ndarray]:
    order = np.random.RandomState(0).permutation(len(x))
    idx = np.resize(order, steps * batch)
    return [x[idx[i * batch : (i + 1) * batch]] for i in range(steps)]


def load_task(model: str, limit: int | None) -> dict:
    """Model path, input shape, calibration batches, evaluation inputs and labels of one bench row."""
    models = SHARED / "models"
    if model in ("resnet20", "resnet56"):
        cal_files, _ = _cifar_dir("calib")
        val_files, val_labels = _cifar_dir("val")
        calib = np.stack([_cifar_image(f) for f in cal_files])
        sel = _subset(len(val_files), limit)
        x = np.stack([_cifar_image(val_files[i]) for i in sel])
        return dict(
            path=models / f"cifar10_{model}.onnx",
            shape=None,
            calib=_batches(calib, 32, 32),
            x=x,
            y=np.array(val_labels)[sel],
            ref=f"{model}_{{target}}_s8",
            ref_key="cifar_val2000",
        )
    if model == "mobilenetv2":
        files = sorted((SHARED / "data" / "imagenet-samples").glob("*.JPEG"))
        x_all = np.stack([_imagenet_image(f) for f in files])
        labels = np.array([int(f.name.split("_")[0]) for f in files])
        sel = _subset(len(files), limit)
        return dict(
            path=models / "mobilenetv2_espdl_zoo_float.onnx",
            shape=None,
            calib=_batches(x_all, 16, 32),
            x=x_all[sel],
            y=labels[sel],
            ref="mobilenetv2_{target}_s8",
            ref_key="imnet_shared500",
        )
    if model == "tvmobilenetv2":
        files = sorted((SHARED / "data" / "imagenet-samples").glob("*.JPEG"))
        x_all = np.stack([_torchvision_image(f) for f in files])
        labels = np.array([int(f.name.split("_")[0]) for f in files])
        sel = _subset(len(files), limit)
        return dict(
            path=torchvision_mobilenet_v2(models / "torchvision_mobilenet_v2-b0353104.pth"),
            shape=[1, 3, 224, 224],
            calib=_batches(x_all, 16, 32),
            x=x_all[sel],
            y=labels[sel],
            ref=None,
            ref_key=None,
            int16_nodes=SEED_INT16_NODES,
        )
    if model == "ppocr_cls":
        x, y = render_text_lines(limit or 200, seed=0)
        calib, _ = render_text_lines(128, seed=1)
        return dict(
            path=models / "ch_ppocr_mobile_v2.0_cls_infer.onnx",
            shape=[1, 3, 48, 192],
            calib=_batches(calib, 4, 32),
            x=x,
            y=y,
            ref=None,
            ref_key=None,
        )
    raise SystemExit(f"unknown model {model!r}")


def _subset(n: int, limit: int | None) -> np.ndarray:
    """The first ``limit`` indices of a RandomState(1) permutation (all, in order, without a limit)."""
    if limit is None or limit >= n:
        return np.arange(n)
    return np.sort(np.random.RandomState(1).permutation(n)[:limit])


def reference_export(task: dict, target: str, bits: int = 8) -> Path | None:
    """ESP-PPQ 1.3.12's own export of this row under ../shared/reference, when there is one."""
    if task["ref"] is None:
        return None
    name = task["ref"].format(target=target).replace("_s8", f"_s{bits}")
    f = SHARED / "reference" / name / f"{name}.espdl"
    return f if f.exists() else None


def reference_top1(task: dict, target: str, limit: int | None, bits: int = 8) -> str:
    """ESP-PPQ's top-1 in its own fake-quant simulation (../shared/reference/*/result.json)."""
    if task["ref"] is None:
        return "n/a"
    f = SHARED / "reference" / task["ref"].format(target=target).replace("_s8", f"_s{bits}") / "result.json"
    if not f.exists():
        return "n/a"
    value = json.loads(f.read_text()).get(task["ref_key"])
    return "n/a" if value is None else f"{value:.2f}" + ("*" if limit else "")


# ---------------------------------------------------------------------------- evaluation
def logits(run, x: np.ndarray, output: str, batch: int = 50) -> np.ndarray:
    return np.concatenate([run(x[i : i + batch])[output] for i in range(0, len(x), batch)])


def chip_logits(espdl: Path, target: str, x: np.ndarray) -> np.ndarray:
    """Outputs of an .espdl file in espq's bit-exact ESP-DL integer simulator, one image at a time."""
    runner = IntegerRunner(espdl, target)
    out = runner.output_names[0]
    return np.stack([runner.run(x[i : i + 1], outputs=[out])[out].reshape(-1) for i in range(len(x))])


def top1(z: np.ndarray, y: np.ndarray) -> float:
    return 100.0 * float(np.mean(z.reshape(len(y), -1).argmax(axis=1) == y))


def agreement(q: np.ndarray, f: np.ndarray) -> float:
    """% of inputs whose top-1 class equals the float model's (label noise of the test set cancels)."""
    return 100.0 * float(
        np.mean(q.reshape(len(f), -1).argmax(axis=1) == f.reshape(len(f), -1).argmax(axis=1))
    )


def nsr(q: np.ndarray, f: np.ndarray) -> float:
    q, f = q.reshape(len(f), -1), f.reshape(len(f), -1)
    return float(((q - f) ** 2).sum() / max((f**2).sum(), 1e-30))


def _config(name: str, task: dict) -> dict:
    """``espq.quantize`` arguments of a bench column: a recipe name, or one of the ESP-DL tutorial's
    settings: "seed-int16" (its two int16 layers, ``task["int16_nodes"]``) and "seed-eq" (ReLU6 -> ReLU
    and its equalization setting), both on the "espdl" recipe."""
    if name == "seed-int16":
        setting = espq.QuantSetting(precision=dict.fromkeys(task["int16_nodes"], 16))
        return dict(recipe="espdl", setting=setting)
    if name == "seed-eq":
        setting = espq.QuantSetting(equalization=True, equalization_setting=SEED_EQUALIZATION)
        return dict(recipe="espdl", setting=setting)
    return dict(recipe=name)


def bench_row(
    model: str, target: str, recipes: list[str], limit: int | None, task: dict, bits: int = 8
) -> dict:
    """Float, ESP-PPQ and espq recipes on one model × target: top-1 and output NSR against float.

    "chip" numbers run the exported .espdl files (ESP-PPQ's own export from ../shared/reference and
    espq's) through the bit-exact integer simulator; "sim" numbers are each tool's fake-quant simulation.
    """
    graph = espq.load(task["path"], input_shape=task["shape"])
    out = graph.outputs[0]
    f = logits(lambda b: espq.run_float(graph, b, outputs=[out]), task["x"], out)
    row = {"model": model, "target": target, "bits": bits, "n": len(task["y"]), "float": top1(f, task["y"])}
    row["esp-ppq"] = reference_top1(task, target, limit, bits)
    ref = reference_export(task, target, bits)
    if ref is not None:
        q = chip_logits(ref, target, task["x"])
        row["esp-ppq chip"], row["esp-ppq chip nsr"] = top1(q, task["y"]), nsr(q, f)
        row["esp-ppq chip agree"] = agreement(q, f)
    for r in recipes:
        t0 = time.time()
        qm = espq.quantize(graph, task["calib"], target=target, bits=bits, progress=False, **_config(r, task))
        row[f"{r} s"] = time.time() - t0
        q = logits(lambda b, qm=qm: qm.run(b, outputs=[out]), task["x"], out)
        row[f"{r} sim"] = top1(q, task["y"])
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{model}.espdl"
            qm.export(path)
            q = chip_logits(path, target, task["x"])
        row[r], row[f"{r} nsr"], row[f"{r} agree"] = top1(q, task["y"]), nsr(q, f), agreement(q, f)
    return row


def _fmt(row: dict, key: str, spec: str) -> str:
    return format(row[key], spec) if key in row else "n/a"


def print_table(rows: list[dict], recipes: list[str]) -> None:
    head = ["model", "target", "bits", "images", "float", "ESP-PPQ sim", "ESP-PPQ chip"]
    head += [f"espq {r} chip" for r in recipes] + ["NSR ESP-PPQ chip"] + [f"NSR espq {r}" for r in recipes]
    head += ["agree ESP-PPQ"] + [f"agree {r}" for r in recipes]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        cells = [
            row["model"],
            row["target"],
            str(row["bits"]),
            str(row["n"]),
            f"{row['float']:.2f}",
            row["esp-ppq"],
            _fmt(row, "esp-ppq chip", ".2f"),
        ]
        cells += [f"{row[r]:.2f}" for r in recipes] + [_fmt(row, "esp-ppq chip nsr", ".2e")]
        cells += [f"{row[f'{r} nsr']:.2e}" for r in recipes]
        cells += [_fmt(row, "esp-ppq chip agree", ".2f")] + [f"{row[f'{r} agree']:.2f}" for r in recipes]
        print("| " + " | ".join(cells) + " |")


def bench_amp(task: dict, target: str, max_error: float) -> None:
    """Auto mixed precision vs promoting the top-k layerwise offenders blindly (same error target)."""
    from espq.quant.mixed_precision import auto_mixed_precision

    print(f"\nauto mixed precision, {target}, target graphwise output error {max_error:g}:")
    for strategy in ("greedy", "top_k"):
        t0 = time.time()
        qm = auto_mixed_precision(
            task["path"], task["calib"], target=target, max_error=max_error, strategy=strategy, progress=False
        )
        rep, out = qm.amp_report, qm.graph.outputs[0]
        q = logits(lambda b, qm=qm, out=out: qm.run(b, outputs=[out]), task["x"], out)
        print(f"[{strategy}] {time.time() - t0:.0f} s, top-1 {top1(q, task['y']):.2f}\n{rep.summary()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="resnet20,resnet56,mobilenetv2,ppocr_cls")
    ap.add_argument("--targets", default="esp32p4,esp32s3")
    ap.add_argument("--recipes", default="espdl,best")
    ap.add_argument("--bits", default="8", help="comma-separated bit widths, e.g. 8,16")
    ap.add_argument("--limit", type=int, default=None, help="evaluate on a fixed subset of this size")
    ap.add_argument("--amp", type=float, default=None, help="also run auto mixed precision to this error")
    args = ap.parse_args()
    recipes = [r for r in args.recipes.split(",") if r]  # --recipes "" with --amp: only the AMP comparison
    rows = []
    for model in args.models.split(","):
        task = load_task(model, args.limit)
        for target, bits in itertools.product(
            args.targets.split(",") if recipes else (), args.bits.split(",")
        ):
            rows.append(bench_row(model, target, recipes, args.limit, task, int(bits)))
            r = rows[-1]
            print(f"# {model} {target}: " + ", ".join(f"{k}={v}" for k, v in r.items()), flush=True)
        if args.amp is not None and model == "mobilenetv2":
            bench_amp(task, "esp32p4", args.amp)
    if rows:
        print_table(rows, recipes)
    if args.limit:
        print(
            f"\n(*) ESP-PPQ numbers are on the full shared split; "
            f"espq columns on a {args.limit}-image subset."
        )


if __name__ == "__main__":
    main()

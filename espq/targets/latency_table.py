"""Latency-model data: cost groups, Espressif's published model latencies, fitted coefficients.

Everything here is data; :mod:`espq.targets.latency` applies it. ``bench/latency_fit.py`` refits
:data:`COEFFICIENTS` from :data:`PUBLISHED` (non-negative least squares) and prints this table.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

#: cost groups (units): MACs of Conv/Gemm/MatMul by ESP-DL kernel (1x1 — Gemm and MatMul included —,
#: 3x3, other sizes) and of depthwise Conv (int16 MACs count twice: 8 int16 lanes per 128-bit PIE
#: register against 16 int8); the same MACs again for non-depthwise ops
#: whose in or out channels are not a multiple of CHANNEL_ALIGN ("unaligned" kernels) and for int16 ops,
#: so those coefficients are the extra cost per MAC and non-negative fitting can only price unaligned and
#: int16 work at or above aligned int8; parameter bytes of MAC nodes; activation bytes read + written by
#: every integer op except views; elements (+ MACs) of float-fallback nodes; one per node.
GROUPS: tuple[str, ...] = (
    "conv1x1_macs",
    "conv3x3_macs",
    "conv_other_macs",
    "unaligned_extra_macs",
    "dw_macs",
    "int16_extra_macs",
    "weight_bytes",
    "moved_bytes",
    "float_elements",
    "nodes",
)
GROUP_INDEX = MappingProxyType({g: i for i, g in enumerate(GROUPS)})

#: int8 Conv/Gemm/MatMul take ESP-DL's aligned SIMD kernels on PIE v1/v2 (S3, P4) only when input and
#: output channels are multiples of 16, else the slower "unaligned" kernels
#: (esp-dl:esp-dl/dl/base/dl_base_conv2d.cpp, load_conv2d_*_s8; int16 kernels align on 8 channels, but
#: int16 work is priced as a whole by ``int16_extra_macs``).
CHANNEL_ALIGN = 16

#: esp-dl commit the records and files come from (models/<component>/README.md "Model Latency" tables).
ESP_DL_COMMIT = "12c0616de145b704e1149c474b9a1e852e631d67"


@dataclass(frozen=True)
class PublishedLatency:
    """One published single-core ``model(ms)`` figure and the zoo file it was measured with.

    ``path``: the `.espdl` inside esp-dl (``models/<component>/models/<chip>/<stem>.espdl``);
    ``source``: the README with the table, at :data:`ESP_DL_COMMIT`.
    """

    component: str
    path: str
    target: str
    ms: float
    source: str


def _r(component: str, chip_stem: str, target: str, ms: float) -> PublishedLatency:
    base = f"https://github.com/espressif/esp-dl/blob/{ESP_DL_COMMIT}/models/{component}"
    return PublishedLatency(
        component, f"models/{component}/models/{chip_stem}.espdl", target, ms, f"{base}/README.md"
    )


#: Model-only ms (pre-/post-processing excluded) from each component README's "Model Latency" table.
#: imagenet_cls lists single- and dual-core rows: the single-core ones are used (ESP-DL's default
#: ``Model::run`` mode; dual core: 223.0 ms P4, 867.0 ms S3). speaker_verification lists microseconds
#: (228370 / 441884 us). pp_ocr_v6 is P4 only.
PUBLISHED: tuple[PublishedLatency, ...] = (
    _r("cat_detect", "p4/espdet_pico_224_224_cat", "esp32p4", 47.5),
    _r("cat_detect", "p4/espdet_pico_416_416_cat", "esp32p4", 182.7),
    _r("cat_detect", "s3/espdet_pico_224_224_cat", "esp32s3", 123.9),
    _r("cat_detect", "s3/espdet_pico_416_416_cat", "esp32s3", 434.5),
    _r("coco_detect", "p4/coco_detect_yolo11n_s8_v1", "esp32p4", 2535.3),
    _r("coco_detect", "p4/coco_detect_yolo11n_320_s8_v1", "esp32p4", 550.1),
    _r("coco_detect", "s3/coco_detect_yolo11n_s8_v1", "esp32s3", 26014.2),
    _r("coco_detect", "s3/coco_detect_yolo11n_320_s8_v1", "esp32s3", 6161.8),
    _r("coco_pose", "p4/coco_pose_yolo11n_pose_s8_v1", "esp32p4", 2729.8),
    _r("coco_pose", "p4/coco_pose_yolo11n_pose_s8_v2", "esp32p4", 2720.1),
    _r("coco_pose", "s3/coco_pose_yolo11n_pose_s8_v1", "esp32s3", 27829.8),
    _r("coco_pose", "s3/coco_pose_yolo11n_pose_s8_v2", "esp32s3", 27850.6),
    _r("coco_seg", "p4/coco_seg_yolo11n_seg_s8_v1", "esp32p4", 3054.5),
    _r("coco_seg", "s3/coco_seg_yolo11n_seg_s8_v1", "esp32s3", 27636.7),
    _r("dog_detect", "p4/espdet_pico_224_224_dog", "esp32p4", 47.5),
    _r("dog_detect", "p4/espdet_pico_416_416_dog", "esp32p4", 185.5),
    _r("dog_detect", "s3/espdet_pico_224_224_dog", "esp32s3", 124.6),
    _r("dog_detect", "s3/espdet_pico_416_416_dog", "esp32s3", 438.4),
    _r("hand_detect", "p4/espdet_pico_224_224_hand", "esp32p4", 47.6),
    _r("hand_detect", "s3/espdet_pico_224_224_hand", "esp32s3", 123.6),
    _r("hand_gesture_recognition", "p4/mobilenetv2_0_5_128_128_gesture", "esp32p4", 26.5),
    _r("hand_gesture_recognition", "s3/mobilenetv2_0_5_128_128_gesture", "esp32s3", 115.4),
    _r("human_face_detect", "p4/human_face_detect_msr_s8_v1", "esp32p4", 13.1),
    _r("human_face_detect", "s3/human_face_detect_msr_s8_v1", "esp32s3", 33.1),
    _r("human_face_detect", "p4/human_face_detect_mnp_s8_v1", "esp32p4", 2.4),
    _r("human_face_detect", "s3/human_face_detect_mnp_s8_v1", "esp32s3", 5.8),
    _r("human_face_detect", "p4/espdet_pico_224_224_face", "esp32p4", 49.6),
    _r("human_face_detect", "p4/espdet_pico_416_416_face", "esp32p4", 185.9),
    _r("human_face_detect", "s3/espdet_pico_224_224_face", "esp32s3", 131.6),
    _r("human_face_detect", "s3/espdet_pico_416_416_face", "esp32s3", 437.0),
    _r("human_face_recognition", "p4/human_face_feat_mfn_s8_v1", "esp32p4", 93.0),
    _r("human_face_recognition", "s3/human_face_feat_mfn_s8_v1", "esp32s3", 248.8),
    _r("human_face_recognition", "p4/human_face_feat_mbf_s8_v1", "esp32p4", 188.2),
    _r("human_face_recognition", "s3/human_face_feat_mbf_s8_v1", "esp32s3", 1072.4),
    _r("imagenet_cls", "p4/imagenet_cls_mobilenetv2_s8_v1", "esp32p4", 326.6),
    _r("imagenet_cls", "s3/imagenet_cls_mobilenetv2_s8_v1", "esp32s3", 1309.5),
    _r("pedestrian_detect", "p4/pedestrian_detect_pico_s8_v1", "esp32p4", 55.6),
    _r("pedestrian_detect", "s3/pedestrian_detect_pico_s8_v1", "esp32s3", 118.3),
    _r("person_reid", "p4/person_reid_feat_osn_s8_v1", "esp32p4", 40.2),
    _r("person_reid", "s3/person_reid_feat_osn_s8_v1", "esp32s3", 110.0),
    _r("pp_ocr_v6", "p4/pp_ocr_v6_det_s8", "esp32p4", 2334.0),
    _r("pp_ocr_v6", "p4/pp_ocr_v6_rec_s8", "esp32p4", 168.9),
    _r("pp_ocr_v6", "p4/pp_ocr_v6_rec_s16", "esp32p4", 383.3),
    _r("pp_ocr_v6", "p4/pp_ocr_v6_rec_s16_w640", "esp32p4", 801.9),
    _r("speaker_verification", "p4/sv_tdnn_tiny_3s", "esp32p4", 228.37),
    _r("speaker_verification", "p4/sv_tdnn_tiny_6s", "esp32p4", 441.884),
    _r("yolo26", "p4/yolo26n_512_s8_p4", "esp32p4", 2067.0),
    _r("yolo26", "p4/yolo26n_640_s8_p4", "esp32p4", 3474.0),
    _r("yolo26", "s3/yolo26n_512_s8_s3", "esp32s3", 7822.0),
    _r("yolo26", "s3/yolo26n_640_s8_s3", "esp32s3", 13107.0),
)


@dataclass(frozen=True)
class KernelLatency:
    """One int8 kernel timing from esp-dl's operator_performance.md (SIMD column, per tensor, bias).

    Shapes in PyTorch's notation as published: input (C, H, W), filter (N, C/group, kh, kw); ``us``:
    microseconds on the target (S3 240 MHz, P4 360 MHz; tensors in PSRAM).
    """

    target: str
    input_chw: tuple[int, int, int]
    filter_nckk: tuple[int, int, int, int]
    pads: tuple[int, int]
    strides: tuple[int, int]
    depthwise: bool
    us: float


_KERNEL_CASES = (  # (input, filter, pad, stride, depthwise, S3 us, P4 us)
    ((16, 20, 20), (32, 16, 1, 1), (0, 0), (1, 1), False, 422, 289),
    ((32, 19, 23), (16, 32, 3, 3), (1, 1), (2, 2), False, 482, 421),
    ((16, 22, 22), (32, 16, 5, 5), (2, 2), (2, 2), False, 974, 666),
    ((22, 19, 23), (33, 22, 3, 3), (1, 1), (1, 1), False, 3447, 2517),
    ((32, 100, 50), (32, 1, 3, 3), (0, 0), (1, 1), True, 5542, 2333),
    ((25, 20, 20), (25, 1, 7, 7), (2, 2), (1, 2), True, 918, 660),
)
#: esp-dl:operator_performance.md at ESP_DL_COMMIT (also esp_dl_facts.md §5 "Kernel micro-benchmarks").
KERNELS: tuple[KernelLatency, ...] = tuple(
    KernelLatency(t, i, f, p, s, d, us)
    for i, f, p, s, d, s3, p4 in _KERNEL_CASES
    for t, us in (("esp32s3", s3), ("esp32p4", p4))
)

#: lower bounds of fitted coefficients where the records cannot price a group. Float fallback: the zoo
#: files run almost nothing in float, so esp32p4's float price comes from the one published figure,
#: "~660 ms per layer" for int16 Swish without a LUT (dequantize -> float -> requantize) on the YOLO26
#: head (esp_ppq_2026.md §1.15, esp-dl PR #286), over the 354,133 elements (in + out) of an average
#: int16 LUT layer of yolo26n_640_s8_p4: an order of magnitude, not a measurement of espq's files.
#: esp32s3 has no published float figure: ASSUMPTION, the P4 price scaled by the clock ratio 360/240 MHz
#: (both run scalar single-precision FPU code; operator_performance.md clocks).
_FLOAT_P4 = 660.0 / 354_133
FLOORS: MappingProxyType[str, MappingProxyType[str, float]] = MappingProxyType(
    {
        "esp32p4": MappingProxyType({"float_elements": _FLOAT_P4}),
        "esp32s3": MappingProxyType({"float_elements": _FLOAT_P4 * 360 / 240}),
    }
)

#: ms per unit of each group, per target: ``python bench/latency_fit.py --coefficients`` on every
#: PUBLISHED record (28 esp32p4, 22 esp32s3) at ESP_DL_COMMIT. A 0 is a group the records cannot tell
#: apart from the others (e.g. esp32s3 depthwise MACs), not a free operation; the bench prints the
#: leave-one-out errors. Targets absent here (c family, esp32s31) have no published latencies.
_COEFFICIENTS = {
    "esp32p4": {
        "conv1x1_macs": 2.55681e-07,
        "conv3x3_macs": 6.67965e-07,
        "conv_other_macs": 8.02691e-07,
        "unaligned_extra_macs": 1.37785e-06,
        "dw_macs": 1.19325e-06,
        "int16_extra_macs": 1.21148e-06,
        "weight_bytes": 3.68272e-06,
        "moved_bytes": 2.20259e-06,
        "float_elements": 0.00186371,
        "nodes": 0,
    },
    "esp32s3": {
        "conv1x1_macs": 8.52848e-07,
        "conv3x3_macs": 7.49254e-06,
        "conv_other_macs": 4.56606e-06,
        "unaligned_extra_macs": 3.11426e-06,
        "dw_macs": 0,
        "int16_extra_macs": 0,
        "weight_bytes": 8.83136e-06,
        "moved_bytes": 0,
        "float_elements": 0.00279556,
        "nodes": 0,
    },
}
COEFFICIENTS: MappingProxyType[str, MappingProxyType[str, float]] = MappingProxyType(
    {t: MappingProxyType(c) for t, c in _COEFFICIENTS.items()}
)

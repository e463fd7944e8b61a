"""The real-model corpus: trained models from PyPI wheels (cached by :mod:`espq.testing.wheels`) and
``../shared/models``, each as an :class:`Source` that loads it and draws test inputs.

Wheels: openwakeword 0.5.1 (ONNX melspectrogram, embedding, wake-word heads), silero-vad 6.2.3 (ONNX,
the LSTM sequence model), facenet-pytorch 2.6.0 (MTCNN P/R/O-Net state dicts; the wheel's own module
imports torchvision, so the modules are written here with its parameter names), mtcnn 1.0.0 (Keras
P/R/O-Net: the wheel's own subclassed ``tf.keras.Model`` code, weights in joblib + lz4 files; lz4 comes
from its PyPI wheel too).
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnx.numpy_helper
import torch
from torch import nn

from espq.testing.wheels import extracted_wheel, wheel_member

SHARED_MODELS = Path(__file__).resolve().parents[2].parent / "shared" / "models"
OPENWAKEWORD = "openwakeword==0.5.1"
SILERO = "silero-vad==6.2.3"
FACENET = "facenet-pytorch==2.6.0"
MTCNN = "mtcnn==1.0.0"
LZ4 = "lz4==4.4.5"


class Unavailable(Exception):
    """The model's wheel or file cannot be had here (the test skips)."""


@dataclass(frozen=True)
class Source:
    """One corpus model: ``load()`` returns what :func:`espq.load` takes plus its ``input_shape``."""

    name: str
    load: Callable[[], tuple[object, object]]
    #: inputs are uniform in [-scale, scale] ...
    scale: float = 1.0
    #: ... except these graph inputs, fed as zeros (recurrent state)
    zeros: tuple[str, ...] = ()
    #: the configs CI runs (indices into test_corpus.CONFIGS: (esp32p4, esp32s3, c) x 8, then x 16);
    #: ESPQ_REALMODELS=full runs all six. Slow models run one config, the slowest none.
    ci: tuple[int, ...] = (0, 1, 2, 3, 4, 5)

    def draw(self, graph, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """One float32 sample per graph input of ``graph`` (its static shapes)."""
        feeds = {}
        for name in graph.inputs:
            shape = [int(d) for d in graph.shape(name)]
            x = np.zeros(shape) if name in self.zeros else rng.uniform(-self.scale, self.scale, shape)
            feeds[name] = x.astype(np.float32)
        return feeds


def _member(requirement: str, member: str) -> bytes:
    data = wheel_member(requirement, member)
    if data is None:
        raise Unavailable(f"{requirement} ({member}) is not cached and cannot be downloaded")
    return data


def _onnx_from_wheel(requirement: str, member: str) -> Callable[[], tuple[object, object]]:
    return _onnx_with_shape(requirement, member, None)


def _onnx_with_shape(requirement: str, member: str, shape: object) -> Callable[[], tuple[object, object]]:
    return lambda: (onnx.load_from_string(_member(requirement, member)), shape)


def _onnx_state_as_zeros(
    requirement: str, member: str, shape: object, states: tuple[str, ...]
) -> Callable[[], tuple[object, object]]:
    """The ONNX model with the graph inputs ``states`` (recurrent state) turned into zero constants:
    ESP-DL reads an LSTM's initial state as a parameter, so a streaming model starts from zeros."""

    def load() -> tuple[object, object]:
        model = onnx.load_from_string(_member(requirement, member))
        for vi in [i for i in model.graph.input if i.name in states]:
            dims = [d.dim_value for d in vi.type.tensor_type.shape.dim]
            model.graph.initializer.append(onnx.numpy_helper.from_array(np.zeros(dims, np.float32), vi.name))
            model.graph.input.remove(vi)
        return model, shape

    return load


def _shared(file: str, input_shape: object = None) -> Callable[[], tuple[object, object]]:
    def load() -> tuple[object, object]:
        path = SHARED_MODELS / file
        if not path.exists():
            raise Unavailable(f"{path} not present")
        return str(path), input_shape

    return load


# --------------------------------------------------------------------------- facenet-pytorch MTCNN
class PNet(nn.Module):
    """facenet-pytorch's MTCNN P-Net (parameter names of its ``pnet.pt``)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1, self.conv4_2 = nn.Conv2d(32, 2, 1), nn.Conv2d(32, 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_2(x), torch.softmax(self.conv4_1(x), dim=1)


class RNet(nn.Module):
    """facenet-pytorch's MTCNN R-Net."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1, self.dense5_2 = nn.Linear(128, 2), nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x)).permute(0, 3, 2, 1).contiguous()
        x = self.prelu4(self.dense4(x.view(x.shape[0], -1)))
        return self.dense5_2(x), torch.softmax(self.dense5_1(x), dim=1)


class ONet(nn.Module):
    """facenet-pytorch's MTCNN O-Net."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1, self.dense6_2, self.dense6_3 = nn.Linear(256, 2), nn.Linear(256, 4), nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x)).permute(0, 3, 2, 1).contiguous()
        x = self.prelu5(self.dense5(x.view(x.shape[0], -1)))
        return self.dense6_2(x), self.dense6_3(x), torch.softmax(self.dense6_1(x), dim=1)


def _facenet(cls: type[nn.Module], file: str, shape: list[int]) -> Callable[[], tuple[object, object]]:
    def load() -> tuple[object, object]:
        state = torch.load(io.BytesIO(_member(FACENET, f"facenet_pytorch/data/{file}")), weights_only=True)
        module = cls()
        module.load_state_dict(state)
        return module.eval(), shape

    return load


# --------------------------------------------------------------------------- mtcnn (Keras)
def _keras_mtcnn(cls_name: str, file: str, shape: list[int]) -> Callable[[], tuple[object, object]]:
    def load() -> tuple[object, object]:
        import importlib

        try:
            import joblib
            import tensorflow  # noqa: F401
        except ImportError as exc:
            raise Unavailable(f"the Keras MTCNN needs tensorflow and joblib ({exc})") from exc
        root, lz4_root = extracted_wheel(MTCNN), extracted_wheel(LZ4)
        if root is None or lz4_root is None:
            raise Unavailable(f"{MTCNN} or {LZ4} is not cached and cannot be downloaded")
        for p in (str(root), str(lz4_root)):
            if p not in sys.path:
                sys.path.insert(0, p)
        import lz4.frame

        module = importlib.import_module(f"mtcnn.network.{cls_name.lower()}")
        model = getattr(module, cls_name)()
        model.build((None, *shape[1:]))
        raw = lz4.frame.decompress((root / "mtcnn" / "assets" / "weights" / file).read_bytes())
        model.set_weights(joblib.load(io.BytesIO(raw)))
        return model, shape

    return load


# --------------------------------------------------------------------------- the corpus
OWW = "openwakeword/resources/models/"
SILERO_SEQ = "silero_vad/data/silero_vad_16k_sequence.onnx"  # the LSTM model with h/c state inputs
SOURCES: dict[str, Source] = {
    s.name: s
    for s in [
        Source(
            "oww_melspectrogram",
            _onnx_with_shape(OPENWAKEWORD, OWW + "melspectrogram.onnx", [1, 1280]),
            3000.0,
        ),
        Source(
            "oww_embedding",
            _onnx_with_shape(OPENWAKEWORD, OWW + "embedding_model.onnx", [1, 76, 32, 1]),
            ci=(1,),
        ),
        Source("oww_hey_mycroft", _onnx_from_wheel(OPENWAKEWORD, OWW + "hey_mycroft_v0.1.onnx")),
        Source("oww_alexa", _onnx_from_wheel(OPENWAKEWORD, OWW + "alexa_v0.1.onnx")),
        Source(
            "silero_vad_zero_state",
            _onnx_state_as_zeros(SILERO, SILERO_SEQ, [2, 576], ("h", "c")),
            ci=(1,),
        ),
        Source("facenet_pnet", _facenet(PNet, "pnet.pt", [1, 3, 24, 32]), ci=(0, 5)),
        Source("facenet_rnet", _facenet(RNet, "rnet.pt", [1, 3, 24, 24]), ci=(2, 3)),
        Source("facenet_onet", _facenet(ONet, "onet.pt", [1, 3, 48, 48]), ci=(1,)),
        Source("keras_pnet", _keras_mtcnn("PNet", "pnet.lz4", [1, 24, 32, 3]), ci=(1, 3)),
        # 120x160: a [1, 55, 75, 4] output (issue 13 finding 6's shape), int16 on esp32s3
        Source("keras_pnet_120x160", _keras_mtcnn("PNet", "pnet.lz4", [1, 120, 160, 3]), ci=(4,)),
        Source("keras_rnet", _keras_mtcnn("RNet", "rnet.lz4", [1, 24, 24, 3]), ci=(0, 5)),
        Source("keras_onet", _keras_mtcnn("ONet", "onet.lz4", [1, 48, 48, 3]), ci=(2,)),
        Source("cifar10_resnet20", _shared("cifar10_resnet20.onnx"), ci=(4,)),
        Source("cifar10_resnet56", _shared("cifar10_resnet56.onnx"), ci=()),
        Source("mobilenetv2_zoo", _shared("mobilenetv2_espdl_zoo_float.onnx"), ci=()),
        Source("ppocr_cls", _shared("ch_ppocr_mobile_v2.0_cls_infer.onnx", [1, 3, 48, 192]), ci=(1,)),
        Source("ppocrv4_det", _shared("ch_PP-OCRv4_det_infer.onnx", [1, 3, 64, 64]), ci=()),
        Source("ppocrv4_rec", _shared("ch_PP-OCRv4_rec_infer.onnx", [1, 3, 48, 96]), ci=()),
        Source("yolov8n_320", _shared("nudenet_yolov8n_320.onnx", [1, 3, 320, 320]), ci=()),
    ]
}

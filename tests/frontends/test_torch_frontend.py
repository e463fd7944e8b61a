"""PyTorch frontend: export naming, multi-input models, export failures."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from espq.errors import ModelLoadError, ShapeError
from espq.frontends import export_torch, to_onnx


class TwoInputs(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.fc = torch.nn.Linear(5, 4)

    def forward(self, x, v):
        return self.conv(x).mean(dim=(2, 3)) + self.fc(v)


class Unexportable(torch.nn.Module):
    def forward(self, x):
        return torch.fft.rfft(x).abs()


def test_node_names_follow_torchscript_module_paths():
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Flatten())
    proto = export_torch(m, input_shape=[1, 3, 8, 8])
    assert [n.name for n in proto.graph.node][:2] == ["/0/Conv", "/1/Relu"]
    assert proto.opset_import[0].version == 18


def test_multi_input_model_matches_torch():
    torch.manual_seed(0)
    m = TwoInputs().eval()
    proto = to_onnx(m, input_shape=[[1, 3, 6, 6], [1, 5]])
    assert [i.name for i in proto.graph.input] == ["input_0", "input_1"]
    x, v = torch.randn(1, 3, 6, 6), torch.randn(1, 5)
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    (out,) = sess.run(None, {"input_0": x.numpy(), "input_1": v.numpy()})
    np.testing.assert_allclose(out, m(x, v).detach().numpy(), rtol=1e-5, atol=1e-5)


def test_example_inputs_instead_of_shape():
    m = torch.nn.Linear(3, 2)
    proto = export_torch(m, inputs=[np.zeros((1, 3), np.float32)])
    assert [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim] == [1, 3]


def test_torch_model_needs_a_shape():
    with pytest.raises(ShapeError, match="input_shape"):
        export_torch(torch.nn.Linear(3, 2))


def test_export_failure_is_a_model_load_error():
    with pytest.raises(ModelLoadError, match=r"torch.onnx.export failed for Unexportable.*\[1, 4\]"):
        export_torch(Unexportable(), input_shape=[1, 4])


def test_training_mode_is_restored():
    m = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Dropout(0.5))
    m.train()
    export_torch(m, input_shape=[1, 3])
    assert m.training

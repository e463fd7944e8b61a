"""ESP-DL's yolo11n recipe (examples/tutorial/how_to_quantize_model/quantize_yolo11n/quantize_onnx_model.py,
esp-dl 12c0616): its settings block (percentile calibration, bias_correct_setting, tqt_optimization_setting)
runs unchanged with ``esp_ppq`` replaced by ``espq``, on a small model (the script's own model and data are
not needed: the test builds the same settings object the same way and calls the same function)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from espq import QuantizationSettingFactory
from espq.api import espdl_quantize_onnx, get_target_platform
from espq.frontends import export_torch
from espq.sim.integer import IntegerRunner


class _Images(Dataset):
    """Stand-in for the script's CaliDataset: CHW float images."""

    def __init__(self, count: int, size: int):
        self.x = np.random.default_rng(0).uniform(0, 1, (count, 3, size, size)).astype(np.float32)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, idx: int) -> torch.Tensor:
        return torch.from_numpy(self.x[idx])


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory):
    torch.manual_seed(0)
    m = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.SiLU(),
        torch.nn.Conv2d(8, 8, 3, stride=2, padding=1), torch.nn.SiLU(),
        torch.nn.Conv2d(8, 4, 1), torch.nn.Sigmoid(),
    )  # fmt: skip
    path = tmp_path_factory.mktemp("yolo11n") / "small.onnx"
    path.write_bytes(export_torch(m, input_shape=[1, 3, 16, 16]).SerializeToString())
    return path


def test_yolo11n_settings_block_runs_unchanged(onnx_path, tmp_path):
    BATCH_SIZE = 32
    INPUT_SHAPE = [3, 16, 16]
    DEVICE = "cpu"
    TARGET = "esp32p4"
    NUM_OF_BITS = 8
    dataloader = DataLoader(dataset=_Images(64, 16), batch_size=BATCH_SIZE, shuffle=False)

    def collate_fn(batch: torch.Tensor) -> torch.Tensor:
        return batch.to(DEVICE)

    # --- the script's settings block, as written there ---
    quant_setting = QuantizationSettingFactory.espdl_setting()
    quant_setting.quantize_activation_setting.calib_algorithm = "percentile"

    quant_setting.equalization = False
    quant_setting.equalization_setting.iterations = 10
    quant_setting.equalization_setting.value_threshold = 0.1
    quant_setting.equalization_setting.opt_level = 2

    quant_setting.bias_correct = True
    quant_setting.bias_correct_setting.interested_layers = []
    quant_setting.bias_correct_setting.block_size = 4
    quant_setting.bias_correct_setting.steps = 32

    quant_setting.tqt_optimization = True
    tqt_setting = quant_setting.tqt_optimization_setting
    tqt_setting.lr = 1e-5
    tqt_setting.steps = 500
    tqt_setting.block_size = 4
    tqt_setting.is_scale_trainable = True
    tqt_setting.gamma = 0.0
    tqt_setting.int_lambda = 0.0
    tqt_setting.collecting_device = "cpu"
    # --- end of the settings block ---

    out = tmp_path / "small_s8.espdl"
    qm = espdl_quantize_onnx(
        onnx_import_file=str(onnx_path),
        espdl_export_file=str(out),
        calib_dataloader=dataloader,
        calib_steps=32,
        input_shape=[1] + INPUT_SHAPE,
        target=TARGET,
        num_of_bits=NUM_OF_BITS,
        collate_fn=collate_fn,
        setting=quant_setting,
        device=DEVICE,
        error_report=True,
        skip_export=False,
        export_test_values=False,
        verbose=0,
        inputs=None,
    )
    assert get_target_platform(TARGET, NUM_OF_BITS) is not None
    assert qm.steps.names == ("bias_correction", "tqt")  # both switched on, in ESP-PPQ's order
    options = dict(qm.steps.steps)
    assert options["bias_correction"]["block_size"] == 4 and options["bias_correction"]["steps"] == 32
    assert options["tqt"]["steps"] == 500 and options["tqt"]["lr"] == 1e-5
    assert out.exists()
    x = _Images(64, 16).x[:4]
    name = qm.graph.outputs[0]
    chip = np.concatenate([IntegerRunner(out).run(x[i : i + 1])[name] for i in range(4)])
    assert np.array_equal(chip, qm.run(x)[name])  # the exported file computes what espq simulates

"""Fine-tuning after calibration: TQT per block (:mod:`espq.quant.finetune.tqt`)."""

from espq.quant.finetune.tqt import BlockResult, TQTOptions, TQTResult, split_blocks, tqt_optimize

__all__ = ["BlockResult", "TQTOptions", "TQTResult", "split_blocks", "tqt_optimize"]

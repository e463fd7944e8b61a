"""Fine-tuning after calibration: TQT per block (:mod:`espq.quant.finetune.tqt`), and writing a
trained :class:`espq.sim.trainable.TrainableFakeQuant` back into a model (:func:`apply_trained`)."""

from espq.quant.finetune.tqt import (
    BlockResult,
    TQTOptions,
    TQTResult,
    apply_trained,
    split_blocks,
    tqt_optimize,
)

__all__ = ["BlockResult", "TQTOptions", "TQTResult", "apply_trained", "split_blocks", "tqt_optimize"]

"""Fine-tuning after calibration, block by block (:mod:`espq.quant.finetune.blocks`): TQT
(:mod:`~espq.quant.finetune.tqt`), blockwise reconstruction (:mod:`~espq.quant.finetune.reconstruct`),
block bias correction (:mod:`~espq.quant.finetune.block_bias`), and writing a trained
:class:`espq.sim.trainable.TrainableFakeQuant` back into a model (:func:`apply_trained`)."""

from espq.quant.finetune.block_bias import block_bias_correction
from espq.quant.finetune.reconstruct import ReconstructionOptions, reconstruct
from espq.quant.finetune.tqt import (
    BlockResult,
    TQTOptions,
    TQTResult,
    apply_trained,
    split_blocks,
    tqt_optimize,
)

__all__ = [
    "BlockResult",
    "ReconstructionOptions",
    "TQTOptions",
    "TQTResult",
    "apply_trained",
    "block_bias_correction",
    "reconstruct",
    "split_blocks",
    "tqt_optimize",
]

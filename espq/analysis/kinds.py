"""The three kinds of per-op error analysis and the titles the text and HTML reports print for them."""

KINDS = ("graphwise", "layerwise", "isolated")

TITLES = {
    "graphwise": (
        "GRAPH-WISE error (accumulated): each op's output in the fully quantized model vs the float model. "
        "Error carried from the input up to this op; it grows along the network."
    ),
    "layerwise": (
        "LAYER-WISE error (ESP-PPQ's meaning): only this op quantized, error measured at the graph outputs. "
        "How much this op alone hurts the result; large values are the ops to keep at int16."
    ),
    "isolated": (
        "ISOLATED error (local): this op quantized and fed the float model's input, error at its own "
        "output. The op's own rounding/clipping, without anything inherited from upstream."
    ),
}

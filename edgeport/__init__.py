"""edgeport: train a Keras CNN, compress and export it, and prove with numbers that nothing was lost.

Importing this package imports nothing heavy: the stages live in `edgeport.train` (TensorFlow),
`edgeport.export` (TensorFlow, tf2onnx) and `edgeport.runtime` (numpy, onnxruntime, LiteRT only).
"""

from edgeport.core.errors import EdgeportError

__version__ = "0.1.0"
__all__ = ["EdgeportError", "__version__"]

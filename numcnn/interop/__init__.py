"""Moving models between numcnn and other frameworks (Keras 3)."""

from .keras import UnsupportedLayerError, from_keras, load_keras_file, to_keras

__all__ = ["from_keras", "to_keras", "load_keras_file", "UnsupportedLayerError"]

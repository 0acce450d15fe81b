"""numcnn layers: Keras-compatible names, arguments and weight layouts (NHWC, HWIO, (in, out))."""

from .activations import Activation, ReLU, Softmax
from .base import AffineLayer, Layer
from .conv import Conv2D
from .dense import Dense
from .pooling import MaxPooling2D
from .reshape import Flatten, Input

LAYER_CLASSES = {cls.__name__: cls for cls in (Activation, ReLU, Softmax, Conv2D, Dense, MaxPooling2D, Flatten, Input)}

__all__ = ["Layer", "AffineLayer", "Activation", "ReLU", "Softmax", "Conv2D", "Dense", "MaxPooling2D",
           "Flatten", "Input", "LAYER_CLASSES"]

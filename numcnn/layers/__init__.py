"""numcnn layers: Keras-compatible names, arguments and weight layouts (NHWC, HWIO, (in, out))."""

from .activations import ELU, Activation, LeakyReLU, ReLU, Softmax
from .base import AffineLayer, Layer
from .conv import Conv2D, Conv2DTranspose
from .dense import Dense
from .normalization import BatchNormalization
from .pooling import AveragePooling2D, GlobalAveragePooling2D, GlobalMaxPooling2D, MaxPooling2D
from .regularization import Dropout
from .reshape import Flatten, Input, Reshape, UpSampling2D, ZeroPadding2D

LAYER_CLASSES = {cls.__name__: cls for cls in (Activation, ReLU, Softmax, Conv2D, Dense, MaxPooling2D, Flatten, Input,
                                                AveragePooling2D, GlobalAveragePooling2D, GlobalMaxPooling2D,
                                                Reshape, UpSampling2D, ZeroPadding2D,
                                                BatchNormalization, Dropout,
                                                Conv2DTranspose, LeakyReLU, ELU)}

__all__ = ["Layer", "AffineLayer", "Activation", "ReLU", "Softmax", "Conv2D", "Dense", "MaxPooling2D",
           "Flatten", "Input", "AveragePooling2D", "GlobalAveragePooling2D", "GlobalMaxPooling2D", "Reshape",
           "UpSampling2D", "ZeroPadding2D", "BatchNormalization", "Dropout",
           "Conv2DTranspose", "LeakyReLU", "ELU", "LAYER_CLASSES"]

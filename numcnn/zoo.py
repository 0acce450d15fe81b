"""Ready-made architectures, starting with the source document's Keras MNIST CNN."""

from __future__ import annotations

from .layers import AveragePooling2D, Conv2D, Dense, Flatten, GlobalAveragePooling2D, Input, MaxPooling2D
from .model import Sequential


def seed_mnist_model(seed: int | None = 0, input_shape=(28, 28, 1), classes: int = 10, dtype="float32") -> Sequential:
    """The source document's model: Conv32-Pool-Conv64-Pool-Conv64-Flatten-Dense64-Dense10(softmax).

    Keras original::

        model = Sequential([
            Conv2D(32, (3, 3), activation='relu', input_shape=(28, 28, 1)), MaxPooling2D((2, 2)),
            Conv2D(64, (3, 3), activation='relu'), MaxPooling2D((2, 2)),
            Conv2D(64, (3, 3), activation='relu'),
            Flatten(), Dense(64, activation='relu'), Dense(10, activation='softmax')])
    """
    return Sequential([
        Input(input_shape),
        Conv2D(32, (3, 3), activation="relu"),
        MaxPooling2D((2, 2)),
        Conv2D(64, (3, 3), activation="relu"),
        MaxPooling2D((2, 2)),
        Conv2D(64, (3, 3), activation="relu"),
        Flatten(),
        Dense(64, activation="relu"),
        Dense(classes, activation="softmax"),
    ], name="seed_mnist_cnn", seed=seed, dtype=dtype)


def artwork_model(seed: int | None = 0, input_shape=(128, 128, 3), classes: int = 10, dtype="float32") -> Sequential:
    """The source document's second example, the "artwork" CNN on 128x128x3 images:
    Conv32-Pool-Conv64-Pool-Conv128-Pool-Flatten-Dense128-Dense10(softmax), every conv 3x3 'valid' + ReLU.

    On 128x128x3 the feature maps are 126² x 32 -> 63² -> 61² x 64 -> 30² -> 28² x 128 -> 14², so the
    Flatten has 14·14·128 = 25,088 values and the first dense layer holds 3.2 M of the model's 3.3 M
    weights. Data: ``numcnn.datasets.load_artwork``."""
    return Sequential([
        Input(input_shape),
        Conv2D(32, (3, 3), activation="relu"),
        MaxPooling2D((2, 2)),
        Conv2D(64, (3, 3), activation="relu"),
        MaxPooling2D((2, 2)),
        Conv2D(128, (3, 3), activation="relu"),
        MaxPooling2D((2, 2)),
        Flatten(),
        Dense(128, activation="relu"),
        Dense(classes, activation="softmax"),
    ], name="artwork_cnn", seed=seed, dtype=dtype)


def artwork_judge_model(seed: int | None = 1, input_shape=(128, 128, 3), classes: int = 10,
                        dtype="float32") -> Sequential:
    """A second, differently built classifier for the artwork data, used as an independent judge of generated
    artwork: strided 5x5 and 3x3 convolutions, average pooling and a global average (no Flatten, no big dense
    layer), so it cannot share the artwork model's blind spots by construction."""
    return Sequential([
        Input(input_shape),
        Conv2D(16, (5, 5), strides=(2, 2), activation="relu"),
        Conv2D(32, (3, 3), activation="relu"),
        AveragePooling2D((2, 2)),
        Conv2D(64, (3, 3), strides=(2, 2), activation="relu"),
        Conv2D(64, (3, 3), activation="relu"),
        GlobalAveragePooling2D(),
        Dense(classes, activation="softmax"),
    ], name="artwork_judge_cnn", seed=seed, dtype=dtype)


def model_for_dataset(dataset: str, seed: int | None = 0, input_shape=(28, 28, 1), classes: int = 10) -> Sequential:
    """The model ``numcnn train --dataset NAME`` builds: the artwork CNN for ``artwork``, else the seed MNIST CNN."""
    if str(dataset).lower() == "artwork":
        return artwork_model(seed=seed, input_shape=input_shape, classes=classes)
    return seed_mnist_model(seed=seed, input_shape=input_shape, classes=classes)

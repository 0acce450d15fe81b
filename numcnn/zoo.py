"""Ready-made architectures, starting with the source document's Keras MNIST CNN."""

from __future__ import annotations

from .layers import Conv2D, Dense, Flatten, Input, MaxPooling2D
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

"""A CIFAR-style model (32x32x3 input, Conv-BN-ReLU blocks with 'same' padding, pooling, Dropout) trains with
``fit``: its loss falls and it learns a task that needs spatial features. The images are made here: four classes
of colour-independent oriented stripes, so neither the mean colour nor brightness gives the class away."""

import numpy as np

from numcnn import Sequential
from numcnn.layers import (BatchNormalization, Conv2D, Dense, Dropout, GlobalAveragePooling2D, Input, MaxPooling2D,
                           ReLU)


def striped_images(n: int, rng: np.random.Generator):
    """``n`` images (32, 32, 3) in [0, 1]: class k has stripes at angle 45k degrees, a random period, phase and
    colour pair, plus noise."""
    labels = rng.integers(0, 4, n)
    rows, cols = np.mgrid[0:32, 0:32]
    images = np.empty((n, 32, 32, 3), np.float32)
    for i, label in enumerate(labels):
        angle = np.pi / 4 * label
        period, phase = rng.uniform(5, 9), rng.uniform(0, 2 * np.pi)
        wave = 0.5 + 0.5 * np.sin(2 * np.pi * (rows * np.sin(angle) + cols * np.cos(angle)) / period + phase)
        dark, light = rng.uniform(0, 0.4, 3), rng.uniform(0.6, 1, 3)
        images[i] = dark + wave[..., None] * (light - dark) + rng.normal(0, 0.05, (32, 32, 3))
    return np.clip(images, 0, 1), labels


def conv_bn_relu(filters):
    """The usual block: the convolution has no bias, since BatchNormalization's mean subtraction cancels it."""
    return [Conv2D(filters, 3, padding="same", use_bias=False), BatchNormalization(momentum=0.9), ReLU()]


def cifar_style_model(seed=0):
    """BN momentum 0.9: with the default 0.99 the moving statistics of a 60-step run are only 45% of the way
    from their initial values to the data's (1 - 0.99**60), and inference would be judged on stale ones."""
    return Sequential([
        Input((32, 32, 3)),
        *conv_bn_relu(16), *conv_bn_relu(16), MaxPooling2D(2), Dropout(0.2),
        *conv_bn_relu(32), MaxPooling2D(2), Dropout(0.2),
        GlobalAveragePooling2D(), Dense(4, activation="softmax"),
    ], seed=seed)


def test_cifar_style_model_with_batchnorm_and_dropout_learns():
    rng = np.random.default_rng(0)
    x, y = striped_images(480, rng)
    x_test, y_test = striped_images(160, rng)
    model = cifar_style_model()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    initial_loss = model.evaluate(x_test, y_test, verbose=0)[0]
    assert abs(initial_loss - np.log(4)) < 0.5  # a fresh classifier guesses: ~log(4)
    history = model.fit(x, y, epochs=4, batch_size=32, verbose=0, seed=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.6 * losses[0], losses
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    assert accuracy > 0.9, (loss, accuracy)  # chance is 0.25
    # inference mode: dropout off and moving statistics, so predictions do not change between calls
    np.testing.assert_array_equal(model.predict(x_test[:8]), model.predict(x_test[:8]))

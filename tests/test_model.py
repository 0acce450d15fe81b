"""Sequential: sanity checks that can fail, Keras semantics of fit/evaluate/summary, files, determinism."""

import math

import numpy as np
import pytest

import numcnn
from numcnn import Sequential, load_model
from numcnn.datasets import load_dataset
from numcnn.layers import Conv2D, Dense, Flatten, Input, MaxPooling2D
from numcnn.preprocessing import images_to_input


@pytest.fixture(scope="module")
def mnist_sample():
    (x_train, y_train), (x_test, y_test) = load_dataset("mnist-5k")
    return (images_to_input(x_train), y_train.astype(np.int64)), (images_to_input(x_test), y_test.astype(np.int64))


def compiled_seed_model(seed=0):
    model = numcnn.seed_mnist_model(seed=seed)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def test_summary_parameter_counts_match_keras():
    """Keras's summary of the source document's model: 320, 18,496, 36,928, 36,928, 650 = 93,322."""
    model = numcnn.seed_mnist_model()
    assert [layer.count_params() for layer in model.layers] == [320, 0, 18496, 0, 36928, 0, 36928, 650]
    assert [layer.output_shape for layer in model.layers] == [
        (26, 26, 32), (13, 13, 32), (11, 11, 64), (5, 5, 64), (3, 3, 64), (576,), (64,), (10,)]
    text = model.summary(print_fn=None)
    assert "Total params: 93,322" in text and "conv2d_1 (Conv2D)" in text and "(None, 13, 13, 32)" in text


def test_initial_loss_is_log_of_class_count(mnist_sample):
    """A fresh 10-class model guesses ~uniformly: loss ≈ ln(10) = 2.303 on real digits."""
    (x, y), _ = mnist_sample
    loss, _ = compiled_seed_model().evaluate(x[:500], y[:500])
    assert abs(loss - math.log(10)) < 0.1


def test_overfits_a_100_image_batch(mnist_sample):
    (x, y), _ = mnist_sample
    model = compiled_seed_model(seed=1)
    for _ in range(150):
        model.train_step(x[:100], y[:100])
        if model.evaluate(x[:100], y[:100], batch_size=100)[1] == 1.0:
            break
    assert model.evaluate(x[:100], y[:100], batch_size=100)[1] == 1.0


def test_same_seed_gives_bit_identical_weights(mnist_sample):
    (x, y), _ = mnist_sample
    runs = []
    for _ in range(2):
        model = compiled_seed_model(seed=7)
        model.fit(x[:600], y[:600], epochs=2, batch_size=64, seed=3, verbose=0)
        runs.append(model.get_weights())
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)
    other = compiled_seed_model(seed=8)
    assert not np.array_equal(other.get_weights()[0], runs[0][0])


def test_fit_history_follows_keras_semantics(mnist_sample):
    """Epoch loss = batch losses (before each update) weighted by batch size, partial last batch included."""
    (x, y), (x_test, y_test) = mnist_sample
    x, y = x[:70], y[:70]  # batches of 32, 32 and a partial 6
    model = compiled_seed_model(seed=2)
    replay = compiled_seed_model(seed=2)
    history = model.fit(x, y, epochs=1, batch_size=32, shuffle=False, verbose=0,
                        validation_data=(x_test[:50], y_test[:50]))
    losses = [replay.train_step(x[s:s + 32], y[s:s + 32]) for s in (0, 32, 64)]
    expected = (losses[0] * 32 + losses[1] * 32 + losses[2] * 6) / 70
    assert history.history["loss"][0] == pytest.approx(expected, rel=1e-6)
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    val_loss, val_accuracy = model.evaluate(x_test[:50], y_test[:50])
    assert history.history["val_loss"][0] == pytest.approx(val_loss)
    assert history.history["val_accuracy"][0] == pytest.approx(val_accuracy)


def test_evaluate_return_dict_and_predict_batching(mnist_sample):
    (x, y), _ = mnist_sample
    model = compiled_seed_model()
    as_list = model.evaluate(x[:50], y[:50], batch_size=7)
    as_dict = model.evaluate(x[:50], y[:50], batch_size=50, return_dict=True)
    assert as_list == pytest.approx([as_dict["loss"], as_dict["accuracy"]], rel=1e-5)
    np.testing.assert_allclose(model.predict(x[:50], batch_size=7), model.predict(x[:50], batch_size=50),
                               rtol=1e-5, atol=1e-7)
    probabilities = model.predict(x[:5])
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)


def _activation_bytes_held(model) -> int:
    """Bytes of arrays the layers hold besides their weights and gradients: what forward kept for backward."""
    def size(value):
        if isinstance(value, np.ndarray):
            return value.nbytes
        if isinstance(value, (tuple, list)):
            return sum(size(item) for item in value)
        return 0

    return sum(size(value) for layer in model.layers for name, value in vars(layer).items()
               if name not in ("params", "grads"))


def test_predict_and_evaluate_release_what_forward_keeps_for_backward():
    """A forward keeps every step's arrays for a backward; predict and evaluate never go backward, so they drop
    them after each batch (else the next batch allocates fresh memory beside them: page faults)."""
    from numcnn.layers import Activation, BatchNormalization, Dropout

    model = Sequential([Input((12, 12, 2)), Conv2D(4, 3, activation="relu"), MaxPooling2D(2),
                        Conv2D(4, 3, use_bias=False), BatchNormalization(), Activation("relu"), Dropout(0.2),
                        Flatten(), Dense(3, activation="softmax")], seed=0)
    model.compile("adam", "sparse_categorical_crossentropy")
    x = np.random.default_rng(0).random((40, 12, 12, 2), dtype=np.float32)
    y = np.arange(40) % 3
    expected = model.forward(x)
    assert _activation_bytes_held(model) > x.nbytes  # what there is to release (the check below can fail)
    np.testing.assert_array_equal(model.predict(x, batch_size=40, verbose=0), expected)
    assert _activation_bytes_held(model) == 0
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert _activation_bytes_held(model) > 0
    model.evaluate(x, y, batch_size=16, verbose=0)
    assert _activation_bytes_held(model) == 0


def test_softmax_output_loss_uses_logits_like_keras():
    """TF_PARITY (measured): Dense(softmax) with logits [30, 0, -30] and label 2: loss 60.0, grad [1, ~0, -1]."""
    model = Sequential([Input((3,)), Dense(3, activation="softmax", use_bias=False)], dtype="float32")
    model.set_weights([np.eye(3, dtype=np.float32)])
    model.compile("sgd", "sparse_categorical_crossentropy")
    x = np.array([[30.0, 0.0, -30.0]], dtype=np.float32)
    assert model.evaluate(x, np.array([2])) == pytest.approx(60.0, rel=1e-6)
    model.loss_and_gradients(x, np.array([2]))
    dz = model.layers[-1].grads["kernel"][0]  # x[0] = 30, so dW[0, :] = 30 * dz
    np.testing.assert_allclose(dz / 30, [1, 0, -1], atol=1e-6)


def test_save_and_load_round_trip(tmp_path, mnist_sample):
    (x, y), _ = mnist_sample
    model = compiled_seed_model(seed=4)
    model.fit(x[:64], y[:64], epochs=1, batch_size=32, verbose=0)
    model.save(tmp_path / "model.npz")
    loaded = load_model(tmp_path / "model.npz")
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(model.predict(x[:10]), loaded.predict(x[:10]))
    assert loaded.get_config() == model.get_config()
    # the optimizer state came along: one more identical step stays identical
    assert model.train_step(x[64:96], y[64:96]) == loaded.train_step(x[64:96], y[64:96])
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_model_files_contain_no_pickle(tmp_path):
    model = numcnn.seed_mnist_model()
    model.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as archive:  # would raise on object arrays
        assert all(archive[name].dtype != object for name in archive.files)


def test_float64_model_computes_in_float64():
    model = Sequential([Input((6, 6, 1)), Conv2D(2, 3), MaxPooling2D(2), Flatten(), Dense(3)], dtype="float64")
    assert all(w.dtype == np.float64 for w in model.get_weights())
    assert model.forward(np.zeros((2, 6, 6, 1), np.float32)).dtype == np.float64

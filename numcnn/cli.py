"""The ``numcnn`` command line: a thin layer that parses arguments, calls the library and prints.

Every user error (bad argument, missing or bad file) prints one line ``numcnn: error: ...`` and exits
with status 2; ``--debug`` (before or after the command) shows the traceback instead. Each check of an
argument runs before the work starts, so a mistake costs nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

EXIT_USAGE = 2
TF_INSTALL_HINT = "pip install -e '.[tf]' in a numcnn checkout, or pip install tensorflow-cpu==2.21.0"
MODEL_HELP = "a model file: numcnn .npz, Keras .keras or legacy .h5, or a Keras .weights.h5 of the seed model"


class CLIError(Exception):
    """A problem to report in one line (exit status 2)."""


# ----------------------------------------------------------------------------------------------
# Shared helpers (also used by numcnn/generate/cli.py)
# ----------------------------------------------------------------------------------------------
def load_cli_model(path, compile: bool = False):
    """``--model FILE``: any file ``numcnn.load_model`` reads; a bare Keras ``.weights.h5`` has no
    architecture, so it is loaded into the model ``numcnn train`` builds (the seed MNIST CNN) if it fits."""
    from .io import load_model, model_file_kind

    if model_file_kind(path) != "keras-weights":
        return load_model(path, compile=compile)
    return load_model(path, compile=compile, model=_seed_model_for_weights(path))


def _seed_model_for_weights(path):
    """The seed MNIST model with the input channels and class count that a weights file's shapes say."""
    import h5py

    from .zoo import seed_mnist_model

    with h5py.File(path, "r") as h5:
        first_kernel, last_kernel = h5.get("layers/conv2d/vars/0"), h5.get("layers/dense_1/vars/0")
        if first_kernel is None or last_kernel is None or len(first_kernel.shape) != 4 or len(last_kernel.shape) != 2:
            raise CLIError(f"{path}: a Keras weights file, but not of the seed MNIST model (the one numcnn train "
                           f"builds): save the whole model as .keras or .npz to use it here")
        channels, classes = int(first_kernel.shape[2]), int(last_kernel.shape[1])
    return seed_mnist_model(input_shape=(28, 28, channels), classes=classes)


def read_model_image(path, model, invert: bool = False):
    """One image file as the model's input, saying on stderr what was converted (colour, size) and hinting
    ``--invert`` when the image looks dark-on-light (MNIST-style models were trained on light-on-dark)."""
    from PIL import Image, UnidentifiedImageError

    from .preprocessing import load_image

    height, width, channels = model.input_shape
    try:
        with Image.open(path) as image:
            mode, size = image.mode, image.size
    except (UnidentifiedImageError, OSError) as error:
        raise CLIError(f"{path}: cannot read image ({error})") from None
    notes = []
    wanted = "L" if channels == 1 else "RGB"
    if mode != wanted:
        dropped = " (transparency dropped)" if "A" in mode else ""
        notes.append(f"converted {mode} to {'greyscale' if channels == 1 else 'RGB'}{dropped}")
    if size != (width, height):
        notes.append(f"resized from {size[0]}x{size[1]} to {width}x{height}"
                     + (" (aspect ratio not kept)" if size[0] * height != size[1] * width else ""))
    x = load_image(path, model.input_shape, invert=invert)
    border = np.concatenate([x[0].ravel(), x[-1].ravel(), x[:, 0].ravel(), x[:, -1].ravel()])
    if not invert and border.mean() > 0.5:
        notes.append(f"looks dark-on-light (its border is {border.mean():.0%} bright); models trained on "
                     f"MNIST-style light-on-dark digits need --invert")
    if notes:
        print(f"numcnn: {path}: " + "; ".join(notes), file=sys.stderr)
    return x


def check_output_directory(text: str, option: str) -> Path:
    """An output directory that can be made (it is made when the results are written): an existing file
    in its place, or a parent without write permission, fails before any work."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise CLIError(f"{option} {text}: exists and is a file, not a directory")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise CLIError(f"{option} {text}: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise CLIError(f"{option} {text}: no permission to write in {existing}")
    return path


def check_class(target, model, option: str = "--target"):
    classes = model.output_shape[-1]
    if target is not None and not 0 <= target < classes:
        raise CLIError(f"{option} {target}: the model has {classes} classes (0-{classes - 1})")
    return target


# ----------------------------------------------------------------------------------------------
# train / evaluate / predict
# ----------------------------------------------------------------------------------------------
def _load_data(name: str):
    from .datasets import load_dataset
    from .preprocessing import images_to_input

    (x_train, y_train), (x_test, y_test) = load_dataset(name)
    return (images_to_input(x_train), y_train.astype("int64")), (images_to_input(x_test), y_test.astype("int64"))


def command_train(args) -> int:
    if args.resume and not args.checkpoint_dir:
        raise CLIError("--resume needs --checkpoint-dir")
    out = check_output_directory(args.out, "--out")
    for name in ("model.npz", "history.json", "training.png"):
        if (out / name).is_dir():
            raise CLIError(f"--out {args.out}: {out / name} is a directory; numcnn train writes a file there")
    if args.checkpoint_dir:
        check_output_directory(args.checkpoint_dir, "--checkpoint-dir")

    if getattr(args, "distributed", False):  # under mpiexec: every rank trains, rank 0 alone writes and prints
        from .distributed.cli import run_distributed

        return run_distributed(_train_and_save, args, out)
    return _train_and_save(args, out)


def _train_and_save(args, out, fit=None, root: bool = True) -> int:
    """Train the seed model (``fit``: ``Sequential.fit`` or a data-parallel one), then, on the root process,
    evaluate, save and plot."""
    from .io import atomic_write_text
    from .zoo import model_for_dataset

    (x_train, y_train), (x_test, y_test) = _load_data(args.dataset)
    # the seed MNIST CNN, or for --dataset artwork the source document's 128x128x3 artwork CNN
    model = model_for_dataset(args.dataset, seed=args.seed, input_shape=x_train.shape[1:],
                              classes=int(y_train.max()) + 1)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    if not args.quiet and root:
        model.summary(print_fn=lambda text: print(text, file=sys.stderr))
    if root:
        print(f"numcnn: training on {args.dataset}: {len(x_train)} train / {len(x_test)} test images, "
              f"{args.epochs} epochs, batch {args.batch_size}, seed {args.seed}", file=sys.stderr)
    start = time.perf_counter()
    history = (fit or type(model).fit)(model, x_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
                                       seed=args.seed, validation_data=(x_test, y_test),
                                       verbose=0 if args.quiet else 1, checkpoint_dir=args.checkpoint_dir,
                                       checkpoint_every=args.checkpoint_every, resume=args.resume)
    seconds = time.perf_counter() - start
    if not root:
        return 0
    test_loss, test_accuracy = model.evaluate(x_test, y_test, batch_size=256, verbose=0)
    model.save(out / "model.npz")
    record = {"dataset": args.dataset, "epochs": args.epochs, "batch_size": args.batch_size, "seed": args.seed,
              "train_seconds": seconds, "test_loss": test_loss, "test_accuracy": test_accuracy,
              "history": history.history}
    atomic_write_text(out / "history.json", json.dumps(record, indent=2))
    _plot_history(history.history, out / "training.png")
    print(f"test accuracy {test_accuracy:.4f}  test loss {test_loss:.4f}  ({seconds:.1f} s training)")
    print(f"wrote {out / 'model.npz'}, {out / 'history.json'}, {out / 'training.png'}")
    return 0


def _plot_history(history: dict, path: Path) -> None:
    from .plotting import save_figure

    import matplotlib.pyplot as plt

    figure, (ax_loss, ax_accuracy) = plt.subplots(1, 2, figsize=(9, 3.5))
    epochs = range(1, len(history["loss"]) + 1)
    for key, axis in (("loss", ax_loss), ("accuracy", ax_accuracy)):
        axis.plot(epochs, history[key], "o-", label="train")
        if f"val_{key}" in history:
            axis.plot(epochs, history[f"val_{key}"], "s--", label="held out")
        axis.set_xlabel("epoch")
        axis.set_xticks(list(epochs))
        axis.set_title(key)
        axis.grid(alpha=0.3)
        axis.legend()
    save_figure(figure, path)


def command_evaluate(args) -> int:
    model = load_cli_model(args.model, compile=True)
    if model.loss is None:  # a weights file, or a model saved uncompiled: evaluate as numcnn train compiles
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    elif "accuracy" not in model.metrics:
        model.compile(optimizer=model.optimizer, loss=model.loss, metrics=[*model.metrics, "accuracy"])
    _, (x_test, y_test) = _load_data(args.dataset)
    results = model.evaluate(x_test, y_test, batch_size=args.batch_size, verbose=0, return_dict=True)
    print(json.dumps({"loss": results["loss"], **results, "examples": len(x_test)}))  # loss first, as Keras
    return 0


def command_predict(args) -> int:
    model = load_cli_model(args.model)
    images = np.stack([read_model_image(path, model, invert=args.invert) for path in args.images])
    probabilities = model.predict(images, verbose=0)
    for path, row in zip(args.images, probabilities):
        print(json.dumps({"image": str(path), "class": int(np.argmax(row)),
                          "probabilities": [round(float(p), 6) for p in row]}))
    return 0


# ----------------------------------------------------------------------------------------------
# Argument types: each error names what was wrong (argparse adds the option's name)
# ----------------------------------------------------------------------------------------------
def _int_at_least(text: str, minimum: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < minimum:
        raise argparse.ArgumentTypeError(f"expected a {what} integer, got {text!r}")
    return value


def positive_int(text: str) -> int:
    return _int_at_least(text, 1, "positive")


def non_negative_int(text: str) -> int:
    """Seeds and class indices: 0, 1, 2, ... (NumPy's generators refuse negative seeds)."""
    return _int_at_least(text, 0, "non-negative")


def existing_file(text: str) -> Path:
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such file: {text}" + (" (it is a directory)" if path.is_dir() else ""))
    return path


def output_file(text: str) -> Path:
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a directory; give the name of the file to write")
    return path


class Parser(argparse.ArgumentParser):
    """argparse that reports errors in one line with exit status 2 (its default status)."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"numcnn: error: {message}\n")


# What the options shared by several commands mean, in one place: commands registered by other modules
# (verify, generate, ...) get the same checks and help where they left them out.
SHARED_OPTIONS = {
    "--seed": (non_negative_int, "random seed (a non-negative integer); the same seed gives the same result"),
    "--model": (existing_file, MODEL_HELP),
}


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = Parser(prog="numcnn", description="numcnn: a from-scratch NumPy CNN you can read, check and run.")
    parser.add_argument("--version", action="version", version=f"numcnn {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="COMMAND",
                                     help="what to do (numcnn COMMAND --help for its options)")

    train = commands.add_parser("train", help="train the source document's MNIST CNN")
    train.add_argument("--dataset", default="mnist-5k",
                       help="mnist-5k (embedded, default), mnist, fashion-mnist, artwork (10 classes of 128x128x3 "
                            "patches of scikit-image's sample images; trains the artwork CNN), or a path to IDX "
                            "files/mnist.npz")
    train.add_argument("--epochs", type=positive_int, default=5, help="passes over the training set (default 5)")
    train.add_argument("--batch-size", type=positive_int, default=32, help="examples per training step (default 32)")
    train.add_argument("--seed", type=non_negative_int, default=0,
                       help="seed of the weights and the shuffling (default 0): the same seed, the same bits")
    train.add_argument("--out", default="runs/train", help="output directory (model.npz, history.json, training.png)")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.add_argument("--checkpoint-dir", help="save model + optimizer + RNG state here (atomically) as it trains")
    train.add_argument("--checkpoint-every", type=positive_int, help="also checkpoint every N steps (default: per epoch)")
    train.add_argument("--resume", action="store_true", help="continue from the checkpoint in --checkpoint-dir")
    train.add_argument("--distributed", action="store_true",
                       help="data-parallel over MPI: run as `mpiexec -n R numcnn train --distributed ...` "
                            "(--batch-size is the global batch; needs numcnn[mpi])")
    train.set_defaults(handler=command_train)

    evaluate = commands.add_parser("evaluate", help="loss and accuracy of a saved model on a test set")
    evaluate.add_argument("--model", type=existing_file, required=True, help=MODEL_HELP)
    evaluate.add_argument("--dataset", default="mnist-5k", help="test set: mnist-5k (default), mnist, fashion-mnist "
                                                                "or a path, as for train")
    evaluate.add_argument("--batch-size", type=positive_int, default=256, help="examples per forward pass (default 256)")
    evaluate.set_defaults(handler=command_evaluate)

    predict = commands.add_parser("predict", help="classify image files (PNG, JPEG, ...)")
    predict.add_argument("--model", type=existing_file, required=True, help=MODEL_HELP)
    predict.add_argument("images", nargs="+", type=existing_file, metavar="IMAGE",
                         help="image files; converted to the model's input (greyscale, size) with a note on stderr")
    predict.add_argument("--invert", action="store_true", help="invert dark-on-light images (MNIST is light on dark)")
    predict.set_defaults(handler=command_predict)

    for register in _extra_commands():
        register(commands)
    for command in commands.choices.values():
        _apply_shared_options(command)
        # SUPPRESS: when not given after the command, it does not overwrite the value given before it
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show full tracebacks")
    return parser


def _apply_shared_options(command: argparse.ArgumentParser) -> None:
    for action in command._actions:
        for option in action.option_strings:
            if option in SHARED_OPTIONS:
                check, help_text = SHARED_OPTIONS[option]
                if action.type in (None, int):
                    action.type = check
                action.help = action.help or help_text


def _extra_commands():
    """Sub-commands that live beside the features they expose (verify, generate, explain, ...)."""
    import importlib
    import importlib.util

    registrars = []
    for module_name in ("numcnn.verify", "numcnn.generate.cli", "numcnn.sweep"):
        try:
            present = importlib.util.find_spec(module_name) is not None
        except ModuleNotFoundError:  # its parent package is absent
            present = False
        if present:
            module = importlib.import_module(module_name)
            if hasattr(module, "register_cli"):
                registrars.append(module.register_cli)
    return registrars


def _missing_tensorflow(error: ModuleNotFoundError) -> bool:
    return (error.name or "").split(".")[0] in ("tensorflow", "keras")


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("numcnn: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # one line for users; --debug for developers
        if args.debug:
            raise
        if isinstance(error, ModuleNotFoundError) and _missing_tensorflow(error):
            message = f"numcnn {args.command} needs TensorFlow, which is not installed: {TF_INSTALL_HINT}"
        else:
            message = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"numcnn: error: {message}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())

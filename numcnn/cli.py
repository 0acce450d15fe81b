"""The ``numcnn`` command line: a thin layer that parses arguments, calls the library and prints.

Every user error (bad argument, missing or bad file) prints one line ``numcnn: error: ...`` and exits
with status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

EXIT_USAGE = 2


class CLIError(Exception):
    """A problem to report in one line (exit status 2)."""


# ----------------------------------------------------------------------------------------------
# train / evaluate / predict
# ----------------------------------------------------------------------------------------------
def _load_data(name: str):
    from .datasets import load_dataset
    from .preprocessing import images_to_input

    (x_train, y_train), (x_test, y_test) = load_dataset(name)
    return (images_to_input(x_train), y_train.astype("int64")), (images_to_input(x_test), y_test.astype("int64"))


def command_train(args) -> int:
    from .io import atomic_write_text
    from .zoo import seed_mnist_model

    if args.resume and not args.checkpoint_dir:
        raise CLIError("--resume needs --checkpoint-dir")

    (x_train, y_train), (x_test, y_test) = _load_data(args.dataset)
    out = Path(args.out)
    model = seed_mnist_model(seed=args.seed, input_shape=x_train.shape[1:], classes=int(y_train.max()) + 1)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    if not args.quiet:
        model.summary(print_fn=lambda text: print(text, file=sys.stderr))
    print(f"numcnn: training on {args.dataset}: {len(x_train)} train / {len(x_test)} test images, "
          f"{args.epochs} epochs, batch {args.batch_size}, seed {args.seed}", file=sys.stderr)
    start = time.perf_counter()
    history = model.fit(x_train, y_train, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                        validation_data=(x_test, y_test), verbose=0 if args.quiet else 1,
                        checkpoint_dir=args.checkpoint_dir, checkpoint_every=args.checkpoint_every,
                        resume=args.resume)
    seconds = time.perf_counter() - start
    test_loss, test_accuracy = model.evaluate(x_test, y_test, batch_size=256)
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
    from .io import load_model

    model = load_model(args.model)
    _, (x_test, y_test) = _load_data(args.dataset)
    loss, accuracy = model.evaluate(x_test, y_test, batch_size=args.batch_size)
    print(json.dumps({"loss": loss, "accuracy": accuracy, "examples": len(x_test)}))
    return 0


def command_predict(args) -> int:
    import numpy as np

    from .io import load_model
    from .preprocessing import load_image

    model = load_model(args.model, compile=False)
    images = np.stack([load_image(path, model.input_shape, invert=args.invert) for path in args.images])
    probabilities = model.predict(images)
    for path, row in zip(args.images, probabilities):
        print(json.dumps({"image": str(path), "class": int(np.argmax(row)),
                          "probabilities": [round(float(p), 6) for p in row]}))
    return 0


# ----------------------------------------------------------------------------------------------
# Parser
# ----------------------------------------------------------------------------------------------
def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def existing_file(text: str) -> Path:
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such file: {text}")
    return path


class Parser(argparse.ArgumentParser):
    """argparse that reports errors in one line with exit status 2 (its default status)."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"numcnn: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="numcnn", description="numcnn: a from-scratch NumPy CNN you can read, check and run.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    train = commands.add_parser("train", help="train the source document's MNIST CNN")
    train.add_argument("--dataset", default="mnist-5k",
                       help="mnist-5k (embedded, default), mnist, fashion-mnist, or a path to IDX files/mnist.npz")
    train.add_argument("--epochs", type=positive_int, default=5)
    train.add_argument("--batch-size", type=positive_int, default=32)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--out", default="runs/train", help="output directory (model.npz, history.json, training.png)")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.add_argument("--checkpoint-dir", help="save model + optimizer + RNG state here (atomically) as it trains")
    train.add_argument("--checkpoint-every", type=positive_int, help="also checkpoint every N steps (default: per epoch)")
    train.add_argument("--resume", action="store_true", help="continue from the checkpoint in --checkpoint-dir")
    train.set_defaults(handler=command_train)

    evaluate = commands.add_parser("evaluate", help="loss and accuracy of a saved model on a test set")
    evaluate.add_argument("--model", type=existing_file, required=True)
    evaluate.add_argument("--dataset", default="mnist-5k")
    evaluate.add_argument("--batch-size", type=positive_int, default=256)
    evaluate.set_defaults(handler=command_evaluate)

    predict = commands.add_parser("predict", help="classify image files (PNG, JPEG, ...)")
    predict.add_argument("--model", type=existing_file, required=True)
    predict.add_argument("images", nargs="+", type=existing_file)
    predict.add_argument("--invert", action="store_true", help="invert dark-on-light images (MNIST is light on dark)")
    predict.set_defaults(handler=command_predict)

    for register in _extra_commands():
        register(commands)
    return parser


def _extra_commands():
    """Sub-commands that live beside the features they expose (verify, generate, explain, ...)."""
    import importlib
    import importlib.util

    registrars = []
    for module_name in ("numcnn.verify", "numcnn.generate.cli"):
        try:
            present = importlib.util.find_spec(module_name) is not None
        except ModuleNotFoundError:  # its parent package is absent
            present = False
        if present:
            module = importlib.import_module(module_name)
            if hasattr(module, "register_cli"):
                registrars.append(module.register_cli)
    return registrars


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
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"numcnn: error: {message}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())

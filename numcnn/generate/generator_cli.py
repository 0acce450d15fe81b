"""``numcnn train-generator`` and ``numcnn sample``: train a conditional VAE or GAN, draw images from it.

Registered by ``numcnn.generate.cli.register_cli``::

    numcnn train-generator --kind vae --dataset mnist-5k --epochs 30 --seed 0 --out runs/vae
        # writes runs/vae/generator.npz, samples.png (10 labels x 10 seeds), losses.png, history.json
    numcnn sample --generator runs/vae/generator.npz --labels 0-9 --seeds 0-9 --out grid.png
    numcnn sample --generator runs/vae/generator.npz --labels 3,8 --interpolate 0 1 --steps 8 --out walk.png
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

GENERATOR_FILE = "generator.npz"


def command_train_generator(args) -> int:
    from ..cli import _load_data, check_output_directory
    from ..io import atomic_write_text
    from . import sample_grid, train_generator

    out = check_output_directory(args.out, "--out")
    (x_train, y_train), _ = _load_data(args.dataset)
    print(f"numcnn: training a conditional {args.kind.upper()} on {args.dataset}: {len(x_train)} images, "
          f"seed {args.seed}", file=sys.stderr)
    start = time.perf_counter()
    gen = train_generator(x_train, y_train, kind=args.kind, epochs=args.epochs, seed=args.seed,
                          batch_size=args.batch_size, progress=not args.quiet)
    seconds = time.perf_counter() - start
    gen.save(out / GENERATOR_FILE)
    labels = list(range(gen.num_classes))
    grid = sample_grid(gen, labels, range(10))
    from .cli import image_grid

    image_grid(grid, [f"label {label}" for label in labels], [f"seed {s}" for s in range(10)], out / "samples.png",
               title=f"conditional {args.kind.upper()} on {args.dataset}: rows = label, columns = seed")
    _plot_losses(gen.history, out / "losses.png", args.kind)
    record = {"kind": args.kind, "dataset": args.dataset, "seed": args.seed, "train_seconds": seconds,
              "settings": gen.settings(), "history": gen.history}
    atomic_write_text(out / "history.json", json.dumps(record, indent=2))
    print(f"trained in {seconds:.1f} s; wrote {out / GENERATOR_FILE}, {out / 'samples.png'}, "
          f"{out / 'losses.png'}, {out / 'history.json'}")
    return 0


def _plot_losses(history: dict, path, kind: str) -> None:
    import matplotlib.pyplot as plt

    from ..plotting import save_figure

    names = [name for name in history if name != "class_accuracy_real"]
    figure, axis = plt.subplots(figsize=(5.5, 3.5))
    for name in names:
        axis.plot(np.arange(1, len(history[name]) + 1), history[name], label=name)
    axis.set_xlabel("epoch")
    axis.set_ylabel("loss (mean over the epoch)")
    axis.set_title(f"{kind.upper()} training losses")
    axis.legend()
    save_figure(figure, path)


def command_sample(args) -> int:
    from ..cli import CLIError
    from ..errors import ModelFileError
    from . import interpolate, load_generator, sample_grid
    from .cli import image_grid

    try:
        gen = load_generator(args.generator)
    except ModelFileError as error:
        raise CLIError(str(error)) from None
    bad = [label for label in args.labels if label >= gen.num_classes]
    if bad:
        raise CLIError(f"--labels {bad[0]}: the generator has {gen.num_classes} classes (0-{gen.num_classes - 1})")
    if args.interpolate is not None:
        if args.steps < 2:
            raise CLIError(f"--steps {args.steps}: a walk needs at least 2 images (its two ends)")
        seed_a, seed_b = args.interpolate
        images = np.stack([interpolate(gen, label, seed_a, seed_b, args.steps) for label in args.labels])
        columns = [f"seed {seed_a}"] + [""] * (args.steps - 2) + [f"seed {seed_b}"]
        title = f"latent walk from seed {seed_a} to seed {seed_b}"
    else:
        images = sample_grid(gen, args.labels, args.seeds)
        columns = [f"seed {s}" for s in args.seeds]
        title = f"{gen.kind.upper()} samples: rows = label, columns = seed (a seed keeps its style across labels)"
    image_grid(images, [f"label {label}" for label in args.labels], columns, args.out, title=title)
    print(f"wrote {args.out}")
    return 0


def register_generator_commands(subparsers) -> None:
    from ..cli import existing_file, non_negative_int, output_file, positive_int
    from .cli import parse_seeds

    train = subparsers.add_parser("train-generator", help="train a conditional VAE or GAN that draws new images")
    train.add_argument("--kind", choices=("vae", "gan"), default="vae", help="the model (default vae)")
    train.add_argument("--dataset", default="mnist-5k",
                       help="mnist-5k (embedded, default), mnist, fashion-mnist, or a path to IDX files/mnist.npz")
    train.add_argument("--epochs", type=positive_int, help="passes over the data (default: the kind's, 30 VAE / 80 GAN)")
    train.add_argument("--batch-size", type=positive_int, help="images per step (default: the kind's, 64)")
    train.add_argument("--seed", type=non_negative_int, default=0,
                       help="seed of weights, shuffling and noise (default 0): the same seed, the same bits")
    train.add_argument("--out", default="runs/generator",
                       help="output directory (generator.npz, samples.png, losses.png, history.json)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(handler=command_train_generator)

    sample = subparsers.add_parser("sample", help="draw images from a trained generator (labels x seeds grid)")
    sample.add_argument("--generator", type=existing_file, required=True,
                        help="a generator file written by numcnn train-generator")
    sample.add_argument("--labels", type=parse_seeds, default=parse_seeds("0-9"),
                        help="labels (rows), e.g. 0-9, 3 or 1,4,7 (default 0-9)")
    sample.add_argument("--seeds", type=parse_seeds, default=parse_seeds("0-9"),
                        help="seeds (columns): the seed sets the style (default 0-9)")
    sample.add_argument("--interpolate", type=non_negative_int, nargs=2, metavar=("A", "B"),
                        help="instead of --seeds: walk through latent space from seed A to seed B")
    sample.add_argument("--steps", type=positive_int, default=8, help="images along --interpolate (default 8)")
    sample.add_argument("--out", type=output_file, default="grid.png", help="PNG to write (default grid.png)")
    sample.set_defaults(handler=command_sample)

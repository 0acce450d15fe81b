"""``numcnn generate | dream | texture | explain``: pictures a person wants to look at, written atomically."""

from __future__ import annotations

import numpy as np


def parse_seeds(text: str) -> list[int]:
    """``"0-9"`` -> 0..9, ``"1,4,7"`` -> [1, 4, 7]."""
    seeds = []
    try:
        for part in text.split(","):
            if "-" in part.strip()[1:]:
                low, high = part.split("-", 1)
                seeds += list(range(int(low), int(high) + 1))
            else:
                seeds.append(int(part))
    except ValueError:
        raise ValueError(f"--seeds must look like 0-9 or 1,4,7, got {text!r}") from None
    return seeds


def image_grid(images, row_labels, column_labels, path, title=None, cmap="gray"):
    """A labelled grid of images (rows x columns x H x W x C), saved as PNG."""
    import matplotlib.pyplot as plt

    from ..plotting import save_figure

    rows, columns = images.shape[:2]
    figure, axes = plt.subplots(rows, columns, figsize=(1.1 * columns + 0.6, 1.1 * rows + 0.5), squeeze=False)
    for i in range(rows):
        for j in range(columns):
            image = images[i, j]
            axes[i, j].imshow(image[..., 0] if image.shape[-1] == 1 else np.clip(image, 0, 1), cmap=cmap, vmin=0, vmax=1)
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
            if j == 0:
                axes[i, j].set_ylabel(row_labels[i], rotation=0, labelpad=18, fontsize=10)
            if i == 0:
                axes[i, j].set_title(column_labels[j], fontsize=8)
    if title:
        figure.suptitle(title, fontsize=10)
    save_figure(figure, path)


def save_rgb(image, path):
    from PIL import Image

    import io

    from ..io import atomic_write_bytes
    from ..preprocessing import input_to_uint8

    array = input_to_uint8(image)
    buffer = io.BytesIO()
    Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())


def command_generate(args) -> int:
    from ..io import load_model
    from . import Prior, class_images

    model = load_model(args.model, compile=False)
    targets = list(range(model.output_shape[-1])) if args.target is None else [args.target]
    seeds = parse_seeds(args.seeds)
    prior = Prior.off() if args.no_prior else Prior()
    images = class_images(model, targets, seeds, steps=args.steps, prior=prior, progress=True)
    probabilities = model.predict(images.reshape(-1, *model.input_shape)).reshape(len(targets), len(seeds), -1)
    columns = [f"seed {s}" for s in seeds]
    image_grid(images, [f"class {t}" for t in targets], columns, args.out,
               title="class images (model's confidence in the target: "
                     f"{np.mean([probabilities[i, :, t] for i, t in enumerate(targets)]):.2f} on average)")
    print(f"wrote {args.out}")
    return 0


def command_dream(args) -> int:
    from ..io import load_model
    from ..preprocessing import load_image
    from . import deep_dream

    model = load_model(args.model, compile=False)
    image = load_image(args.image, model.input_shape)
    layers = [int(v) if v.lstrip("-").isdigit() else v for v in args.layers.split(",")]
    dream = deep_dream(model, image, layers, seed=args.seed, octaves=args.octaves, steps=args.steps, progress=True)
    image_grid(np.stack([image, dream])[None], [""], ["input", f"dream on {args.layers}"], args.out)
    print(f"wrote {args.out}")
    return 0


def command_texture(args) -> int:
    from ..preprocessing import load_image
    from . import texture

    exemplar = load_image(args.exemplar, (args.exemplar_size, args.exemplar_size, 3))
    result = texture(exemplar, seed=args.seed, size=(args.size, args.size), steps=args.steps, progress=True)
    save_rgb(result, args.out)
    print(f"wrote {args.out}")
    return 0


def command_explain(args) -> int:
    import matplotlib.pyplot as plt

    from ..explain import saliency
    from ..io import load_model
    from ..plotting import save_figure
    from ..preprocessing import load_image

    model = load_model(args.model, compile=False)
    x = load_image(args.image, model.input_shape, invert=args.invert)
    probabilities = model.predict(x[None])[0]
    target = int(np.argmax(probabilities)) if args.target is None else args.target
    result = saliency(model, x, target, method=args.method)
    heatmap = result[0] if isinstance(result, tuple) else result
    figure, axes = plt.subplots(1, 2, figsize=(6, 3.2))
    gray = x[..., 0] if x.shape[-1] == 1 else x
    axes[0].imshow(gray, cmap="gray", vmin=0, vmax=1)
    axes[0].set_title(f"input: predicted {int(np.argmax(probabilities))} ({probabilities.max():.2f})", fontsize=9)
    axes[1].imshow(gray, cmap="gray", vmin=0, vmax=1)
    limit = np.max(np.abs(heatmap)) + 1e-12
    shown = axes[1].imshow(heatmap, cmap="inferno" if heatmap.min() >= 0 else "bwr",
                           vmin=0 if heatmap.min() >= 0 else -limit, vmax=limit, alpha=0.6)
    axes[1].set_title(f"{args.method} for class {target}", fontsize=9)
    figure.colorbar(shown, ax=axes[1], fraction=0.046)
    for axis in axes:
        axis.axis("off")
    save_figure(figure, args.out)
    print(f"wrote {args.out}")
    return 0


def register_cli(subparsers) -> None:
    from ..cli import existing_file, positive_int
    from ..explain import METHODS

    generate = subparsers.add_parser("generate", help="class images from seeds (activation maximisation)")
    generate.add_argument("--model", type=existing_file, required=True)
    generate.add_argument("--target", type=int, help="class to generate (default: every class)")
    generate.add_argument("--seeds", default="0-4", help="e.g. 0-9 or 1,4,7")
    generate.add_argument("--steps", type=positive_int, default=256)
    generate.add_argument("--no-prior", action="store_true", help="plain gradient ascent (shows fooling images)")
    generate.add_argument("--out", default="class_images.png")
    generate.set_defaults(handler=command_generate)

    dream = subparsers.add_parser("dream", help="DeepDream: amplify what chosen layers see in an image")
    dream.add_argument("--model", type=existing_file, required=True)
    dream.add_argument("--image", type=existing_file, required=True)
    dream.add_argument("--layers", default="conv2d_1", help="comma-separated layer names or indices")
    dream.add_argument("--seed", type=int, default=0)
    dream.add_argument("--octaves", type=positive_int, default=2)
    dream.add_argument("--steps", type=positive_int, default=20)
    dream.add_argument("--out", default="dream.png")
    dream.set_defaults(handler=command_dream)

    texture = subparsers.add_parser("texture", help="texture 'artwork' from an exemplar image (Gram matrices)")
    texture.add_argument("--exemplar", type=existing_file, required=True)
    texture.add_argument("--seed", type=int, default=0)
    texture.add_argument("--size", type=positive_int, default=128)
    texture.add_argument("--exemplar-size", type=positive_int, default=128)
    texture.add_argument("--steps", type=positive_int, default=300)
    texture.add_argument("--out", default="texture.png")
    texture.set_defaults(handler=command_texture)

    explain = subparsers.add_parser("explain", help="saliency / Grad-CAM heatmap over an input image")
    explain.add_argument("--model", type=existing_file, required=True)
    explain.add_argument("--image", type=existing_file, required=True)
    explain.add_argument("--method", choices=METHODS, default="gradcam")
    explain.add_argument("--target", type=int, help="class to explain (default: the predicted class)")
    explain.add_argument("--invert", action="store_true", help="invert dark-on-light images")
    explain.add_argument("--out", default="explanation.png")
    explain.set_defaults(handler=command_explain)

"""``numcnn generate | dream | texture | explain``: pictures a person wants to look at, written atomically."""

from __future__ import annotations

import sys
import warnings

import numpy as np


def parse_seeds(text: str) -> list[int]:
    """``"0-9"`` -> 0..9, ``"1,4,7"`` -> [1, 4, 7], ``"0-2,7"`` -> [0, 1, 2, 7]; seeds are non-negative."""
    import argparse

    seeds = []
    for part in text.split(","):
        low, dash, high = part.strip().partition("-")
        try:
            span = [int(low)] if not dash else list(range(int(low), int(high) + 1))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected seeds like 0-9 or 1,4,7 (non-negative integers), "
                                             f"got {text!r}") from None
        if not span:
            raise argparse.ArgumentTypeError(f"the range {part.strip()!r} is empty (it counts down); write "
                                             f"{high.strip()}-{low.strip()}")
        seeds += span
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


def load_cli_generator(path):
    """``--generator FILE``: a file ``numcnn train-generator`` wrote; a damaged one is a one-line error."""
    from ..cli import CLIError
    from ..errors import ModelFileError
    from .generative import load_generator

    try:
        return load_generator(path)
    except ModelFileError as error:
        raise CLIError(str(error)) from None


def command_generate(args) -> int:
    from ..cli import check_class, check_output_directory, load_cli_model
    from . import Prior, class_images

    model = load_cli_model(args.model)
    check_class(args.target, model)
    save_dir = check_output_directory(args.save_images, "--save-images") if args.save_images else None
    targets = list(range(model.output_shape[-1])) if args.target is None else [args.target]
    seeds = args.seeds
    prior = Prior.off() if args.no_prior else Prior()
    if args.generator:  # search the generator's latent space (Nguyen et al. 2016): no image prior needed
        images = class_images(model, targets, seeds, steps=args.steps, progress=True,
                              generator=load_cli_generator(args.generator))
    elif model.input_shape[-1] == 3 and not args.no_prior:  # colour pictures (the artwork model): its own prior
        from .artwork import artwork_grid

        images = artwork_grid(model, targets, seeds, steps=args.steps or 256, progress=True)
    else:
        images = class_images(model, targets, seeds, steps=args.steps, prior=prior, progress=True)
    probabilities = model.predict(images.reshape(-1, *model.input_shape), verbose=0).reshape(len(targets), len(seeds), -1)
    columns = [f"seed {s}" for s in seeds]
    image_grid(images, [f"class {t}" for t in targets], columns, args.out,
               title="class images (model's confidence in the target: "
                     f"{np.mean([probabilities[i, :, t] for i, t in enumerate(targets)]):.2f} on average)")
    written = [str(args.out)]
    if save_dir is not None:  # each image alone, at the model's input size: ready for predict / explain
        for i, target in enumerate(targets):
            for j, seed in enumerate(seeds):
                save_rgb(images[i, j], save_dir / f"class{target}_seed{seed}.png")
        written.append(f"{len(targets) * len(seeds)} images in {save_dir}")
    print(f"wrote {', '.join(written)}")
    return 0


def layer_names(model, text: str) -> list[str]:
    """``"conv2d_2,dense"`` or ``"4,-1"`` -> the layers' names (a clear error for an unknown one)."""
    from .activations import layer_index

    try:
        return [model.layers[layer_index(model, int(v) if v.strip().lstrip("-").isdigit() else v.strip())].name
                for v in text.split(",")]
    except ValueError as error:
        raise SystemExit(f"numcnn: {error}") from None


def command_dream(args) -> int:
    from ..cli import load_cli_model, read_model_image
    from . import deep_dream

    model = load_cli_model(args.model)
    image = read_model_image(args.image, model, invert=args.invert)
    names = layer_names(model, args.layers)
    with warnings.catch_warnings(record=True) as caught:  # a clamped octave count: say so, keep going
        warnings.simplefilter("always")
        dream = deep_dream(model, image, names, seed=args.seed, octaves=args.octaves, steps=args.steps,
                           progress=True)
    for warning in caught:
        print(f"numcnn dream: {warning.message}", file=sys.stderr)
    image_grid(np.stack([image, dream])[None], [""], ["input", f"dream on {', '.join(names)}"], args.out)
    print(f"wrote {args.out}")
    return 0


def command_texture(args) -> int:
    from ..preprocessing import load_image
    from . import texture

    exemplar = load_image(args.exemplar, (args.exemplar_size, args.exemplar_size, 3))
    result = texture(exemplar, seed=args.seed, size=(args.size, args.size), steps=args.steps, scales=args.scales,
                     progress=True)
    save_rgb(result, args.out)
    print(f"wrote {args.out}")
    return 0


def command_style(args) -> int:
    from ..preprocessing import load_image
    from . import style_transfer

    content = load_image(args.content, (args.size, args.size, 3))
    style = load_image(args.style, (args.style_size, args.style_size, 3))
    result = style_transfer(content, style, seed=args.seed, content_weight=args.content_weight, steps=args.steps,
                            progress=True)
    save_rgb(result, args.out)
    print(f"wrote {args.out}")
    return 0


def command_explain(args) -> int:
    import matplotlib.pyplot as plt

    from ..cli import check_class, load_cli_model, read_model_image
    from ..explain import saliency
    from ..plotting import save_figure

    model = load_cli_model(args.model)
    check_class(args.target, model)
    x = read_model_image(args.image, model, invert=args.invert)
    probabilities = model.predict(x[None], verbose=0)[0]
    target = int(np.argmax(probabilities)) if args.target is None else args.target
    layer = layer_names(model, args.layer)[0] if args.layer else None
    result = saliency(model, x, target, method=args.method, layer=layer)
    heatmap = result[0] if isinstance(result, tuple) else result
    figure, axes = plt.subplots(1, 2, figsize=(6, 3.2))
    gray = x[..., 0] if x.shape[-1] == 1 else x
    axes[0].imshow(gray, cmap="gray", vmin=0, vmax=1)
    axes[0].set_title(f"input: predicted {int(np.argmax(probabilities))} ({probabilities.max():.2f})", fontsize=9)
    axes[1].imshow(gray, cmap="gray", vmin=0, vmax=1)
    limit = np.max(np.abs(heatmap)) + 1e-12
    shown = axes[1].imshow(heatmap, cmap="inferno" if heatmap.min() >= 0 else "bwr",
                           vmin=0 if heatmap.min() >= 0 else -limit, vmax=limit, alpha=0.6)
    if args.method == "gradcam":  # name the layer the map comes from
        from ..explain import gradcam_layer_index

        where = f" on {model.layers[gradcam_layer_index(model, layer)].name}"
    else:
        where = ""
    axes[1].set_title(f"{args.method}{where} for class {target}", fontsize=9)
    figure.colorbar(shown, ax=axes[1], fraction=0.046)
    for axis in axes:
        axis.axis("off")
    save_figure(figure, args.out)
    print(f"wrote {args.out}")
    return 0


def register_cli(subparsers) -> None:
    from ..cli import MODEL_HELP, existing_file, non_negative_int, output_file, positive_int
    from ..explain import METHODS

    generate = subparsers.add_parser("generate", help="class images from seeds (activation maximisation)")
    generate.add_argument("--model", type=existing_file, required=True, help=MODEL_HELP)
    generate.add_argument("--target", type=non_negative_int, help="class to generate (default: every class)")
    generate.add_argument("--seeds", type=parse_seeds, default=parse_seeds("0-4"),
                          help="seeds of the starting images, e.g. 0-9, 1,4,7 or 0-2,7 (default 0-4)")
    generate.add_argument("--steps", type=positive_int,
                          help="gradient-ascent steps (default 256; 15 with --generator)")
    generate.add_argument("--generator", type=existing_file, metavar="GEN.npz",
                          help="search this conditional generator's latent space (numcnn train-generator) "
                               "instead of pixels")
    generate.add_argument("--no-prior", action="store_true", help="plain gradient ascent (shows fooling images)")
    generate.add_argument("--out", type=output_file, default="class_images.png",
                          help="PNG of the labelled grid (default class_images.png)")
    generate.add_argument("--save-images", metavar="DIR",
                          help="also write each image alone, at the model's input size, as DIR/class<T>_seed<S>.png")
    generate.set_defaults(handler=command_generate)

    dream = subparsers.add_parser("dream", help="DeepDream: amplify what chosen layers see in an image")
    dream.add_argument("--model", type=existing_file, required=True, help=MODEL_HELP)
    dream.add_argument("--image", type=existing_file, required=True, help="the image to dream on (PNG, JPEG, ...)")
    dream.add_argument("--invert", action="store_true", help="invert dark-on-light images")
    dream.add_argument("--layers", default="conv2d_1", help="comma-separated layer names or indices (default conv2d_1)")
    dream.add_argument("--seed", type=non_negative_int, default=0, help="seed of the random jitter (default 0)")
    dream.add_argument("--octaves", type=positive_int, default=2, help="scales to dream at (default 2)")
    dream.add_argument("--steps", type=positive_int, default=20, help="ascent steps per octave (default 20)")
    dream.add_argument("--out", type=output_file, default="dream.png", help="PNG to write (default dream.png)")
    dream.set_defaults(handler=command_dream)

    texture = subparsers.add_parser("texture", help="texture 'artwork' from an exemplar image (Gram matrices)")
    texture.add_argument("--exemplar", type=existing_file, required=True,
                         help="any picture (PNG, JPEG, ...) whose texture to imitate")
    texture.add_argument("--seed", type=non_negative_int, default=0,
                         help="seed of the filter bank and the starting noise (default 0)")
    texture.add_argument("--size", type=positive_int, default=128, help="side of the square output in pixels (default 128)")
    texture.add_argument("--exemplar-size", type=positive_int, default=128,
                         help="side the exemplar is resized to first (default 128)")
    texture.add_argument("--steps", type=positive_int, default=300, help="L-BFGS iterations (default 300)")
    texture.add_argument("--scales", type=positive_int, default=3,
                         help="levels of the coarse-to-fine pyramid; 1 = single scale (default 3)")
    texture.add_argument("--out", type=output_file, default="texture.png", help="PNG to write (default texture.png)")
    texture.set_defaults(handler=command_texture)

    style = subparsers.add_parser("style", help="style transfer: a content image painted with a style's texture")
    style.add_argument("--content", type=existing_file, required=True, help="the picture whose layout to keep")
    style.add_argument("--style", type=existing_file, required=True, help="the picture whose texture to use")
    style.add_argument("--seed", type=non_negative_int, default=0, help="seed of the filter bank (default 0)")
    style.add_argument("--size", type=positive_int, default=128, help="side of the square output (default 128)")
    style.add_argument("--style-size", type=positive_int, default=128,
                       help="side the style image is resized to first (default 128)")
    style.add_argument("--content-weight", type=float, default=1.0,
                       help="weight of the content term against the style term (default 1.0)")
    style.add_argument("--steps", type=positive_int, default=200, help="L-BFGS iterations (default 200)")
    style.add_argument("--out", type=output_file, default="style.png", help="PNG to write (default style.png)")
    style.set_defaults(handler=command_style)

    explain = subparsers.add_parser("explain", help="saliency / Grad-CAM heatmap over an input image")
    explain.add_argument("--model", type=existing_file, required=True, help=MODEL_HELP)
    explain.add_argument("--image", type=existing_file, required=True, help="the image to explain (PNG, JPEG, ...)")
    explain.add_argument("--method", choices=METHODS, default="gradcam", help="attribution method (default gradcam)")
    explain.add_argument("--target", type=non_negative_int, help="class to explain (default: the predicted class)")
    explain.add_argument("--invert", action="store_true", help="invert dark-on-light images")
    explain.add_argument("--layer", help="Grad-CAM's layer, a name or an index (default: the last Conv2D layer)")
    explain.add_argument("--out", type=output_file, default="explanation.png",
                         help="PNG to write (default explanation.png)")
    explain.set_defaults(handler=command_explain)

    from .generator_cli import register_generator_commands  # train-generator, sample (VAE / GAN)

    register_generator_commands(subparsers)

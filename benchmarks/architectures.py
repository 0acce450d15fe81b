"""Training-step and inference time of numcnn vs Keras (TensorFlow) vs PyTorch on several architectures.

    python benchmarks/architectures.py                  # all architectures, batch 32 and 64, 3 rounds
    python benchmarks/architectures.py --quick          # CI smoke mode: one round, two steps

Each architecture is one neutral list of layers, built in each framework with the same shapes, so the same
arithmetic runs everywhere. Every (framework, architecture, batch) runs in a fresh subprocess with 2 threads, on
random data (speed does not depend on the values), with Adam and sparse categorical cross-entropy (the mean
squared error for the generator, which outputs images): a few warm-up steps, then the median of ``--steps``
timed steps; the same for inference calls on 256 images. Frameworks
alternate within each round; the table reports the median over rounds and numcnn's time divided by the faster
peer's (< 1: numcnn is faster), numcnn's rate against the measured sgemm peak (its training FLOPs: 2 per
multiply-add of the forward, input-gradient and weight-gradient products; in brackets the rate counted with
Winograd's fewer multiplications on 3x3 stride-1 layers) and each framework's peak RSS. The first line of
the output names the CPU, because the ratios change with it (see the README's performance section). Below the
table, numcnn's time per step of each architecture (``step_profile``: training forward and backward at the
first batch size, inference forward). Writes ``benchmarks/results/architectures.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # TF's fastest CPU path: the peer at its best

HERE = Path(__file__).resolve().parent
THREADS = 2
CLASSES = 10

# (name, input shape, layers[, target shape]). Layers: ("conv", filters, kernel, strides, padding, use_bias[, activation]),
# ("convT", ...) the same for Conv2DTranspose, ("bn",), ("relu",), ("leaky", slope), ("maxpool", size[, strides,
# padding]), ("dropout", rate), ("flatten",), ("reshape", (h, w, c)), ("dense", units[, activation[, use_bias]]),
# ("head",) = Dense(10, softmax). An activation on a conv/dense is written as Keras users write it
# (``Conv2D(32, 3, activation="relu")``); numcnn then fuses Conv2D + ReLU + MaxPooling2D where they follow.
# The loss is sparse categorical cross-entropy on 10 classes, or with a target shape the mean squared error
# against random images of that shape (the generator: its layers' forward and backward are what a GAN's
# generator step costs).
ARCHITECTURES = {
    "seed MNIST CNN": ((28, 28, 1), [
        ("conv", 32, 3, 1, "valid", True, "relu"), ("maxpool", 2),
        ("conv", 64, 3, 1, "valid", True, "relu"), ("maxpool", 2),
        ("conv", 64, 3, 1, "valid", True, "relu"), ("flatten",), ("dense", 64, "relu"), ("head",)]),
    # the source document's 128x128x3 "artwork" CNN
    "artwork CNN 128x128x3": ((128, 128, 3), [
        ("conv", 32, 3, 1, "valid", True, "relu"), ("maxpool", 2),
        ("conv", 64, 3, 1, "valid", True, "relu"), ("maxpool", 2),
        ("conv", 128, 3, 1, "valid", True, "relu"), ("maxpool", 2),
        ("flatten",), ("dense", 128, "relu"), ("head",)]),
    "CIFAR-style, BN + Dropout": ((32, 32, 3), [
        ("conv", 32, 3, 1, "same", False), ("bn",), ("relu",), ("conv", 32, 3, 1, "same", False), ("bn",), ("relu",),
        ("maxpool", 2), ("dropout", 0.25),
        ("conv", 64, 3, 1, "same", False), ("bn",), ("relu",), ("conv", 64, 3, 1, "same", False), ("bn",), ("relu",),
        ("maxpool", 2), ("dropout", 0.25), ("flatten",), ("dense", 128), ("bn",), ("relu",), ("dropout", 0.5),
        ("head",)]),
    # 5x5 kernels, a stride-2 first layer and overlapping 'same' pooling (3x3 windows, stride 2), 1x1 conv
    "strided 5x5, 'same' pooling": ((64, 64, 3), [
        ("conv", 32, 5, 2, "same", True, "relu"), ("maxpool", 3, 2, "same"),
        ("conv", 64, 5, 1, "same", True, "relu"), ("maxpool", 3, 2, "same"),
        ("conv", 32, 1, 1, "valid", True, "relu"), ("flatten",), ("dense", 64, "relu"), ("head",)]),
    # the generative-models pair: numcnn.generate.gan's generator and discriminator for MNIST at their widths
    # (filters (32, 64), latent 32 + 10 one-hot); the discriminator's head (1 + 10 logits) is Dense(10, softmax)
    "DCGAN generator (MNIST)": ((42,), [
        ("dense", 7 * 7 * 64, None, False), ("bn",), ("leaky", 0.2), ("reshape", (7, 7, 64)),
        ("convT", 32, 4, 2, "same", False), ("bn",), ("leaky", 0.2),
        ("convT", 1, 4, 2, "same", True, "sigmoid")], (28, 28, 1)),
    "DCGAN discriminator (MNIST)": ((28, 28, 1), [
        ("conv", 32, 4, 2, "same", True), ("leaky", 0.2), ("dropout", 0.3),
        ("conv", 64, 4, 2, "same", True), ("leaky", 0.2), ("dropout", 0.3), ("flatten",), ("head",)]),
}


def architecture_parts(name):
    """``(input shape, layers, target shape or None)`` of one entry of ``ARCHITECTURES``."""
    shape, spec, *target = ARCHITECTURES[name]
    return shape, spec, (target or [None])[0]


def loss_name(target_shape) -> str:
    return "sparse_categorical_crossentropy" if target_shape is None else "mse"


# ----------------------------------------------------------------------------------------------
# One architecture in each framework
# ----------------------------------------------------------------------------------------------
def build_layers(L, shape, spec, input_layer):
    """The layer list of ``spec`` from a module of Keras-named layers: ``numcnn.layers`` and ``keras.layers``
    alike (numcnn keeps Keras's names and arguments, so one function builds both)."""
    built = [input_layer(shape)]
    for kind, *args in spec:
        built.append({"conv": lambda f, k, s, p, b, a=None: L.Conv2D(f, k, strides=s, padding=p, use_bias=b,
                                                                     activation=a),
                      "convT": lambda f, k, s, p, b, a=None: L.Conv2DTranspose(f, k, strides=s, padding=p,
                                                                               use_bias=b, activation=a),
                      "bn": L.BatchNormalization, "relu": L.ReLU, "dropout": L.Dropout,
                      "leaky": lambda slope: L.LeakyReLU(negative_slope=slope), "reshape": L.Reshape,
                      "maxpool": lambda size, s=None, p="valid": L.MaxPooling2D(size, strides=s, padding=p),
                      "flatten": L.Flatten,
                      "dense": lambda units, a=None, b=True: L.Dense(units, activation=a, use_bias=b),
                      "head": lambda: L.Dense(CLASSES, activation="softmax")}[kind](*args))
    return built


def numcnn_model(shape, spec, loss):
    import numcnn
    from numcnn import layers

    model = numcnn.Sequential(build_layers(layers, shape, spec, layers.Input), seed=0)
    model.compile("adam", loss)
    return (lambda x, y: model.train_step(x, y)), (lambda x: model.predict(x, batch_size=len(x), verbose=0))


def keras_model(shape, spec, loss):
    import keras
    import tensorflow as tf

    model = keras.Sequential(build_layers(keras.layers, shape, spec, keras.Input))
    model.compile("adam", loss)
    return (lambda x, y: model.train_on_batch(tf.constant(x), tf.constant(y))), (lambda x: model.predict_on_batch(x))


def torch_model(shape, spec, loss):
    import torch
    from torch import nn

    size = (shape[2], shape[0], shape[1]) if len(shape) == 3 else tuple(shape)  # (C, H, W) or (features,)
    modules = []
    for kind, *args in spec:
        if kind == "conv":
            filters, kernel, strides, padding, bias, *activation = args
            pads, size = same_padding(size, kernel, strides, padding)
            modules += [nn.ZeroPad2d(pads), nn.Conv2d(size[0], filters, kernel, stride=strides, bias=bias)]
            size = (filters, *size[1:])
            modules += [nn.ReLU()] if activation == ["relu"] else []
        elif kind == "convT":  # stride 2, kernel 4, 'same' only: TF crops (k - s) / 2 = 1 a side, as padding=1
            filters, kernel, strides, padding, bias, *activation = args
            assert (kernel, strides, padding) == (4, 2, "same"), "only the DCGAN's transposed convolution"
            modules.append(nn.ConvTranspose2d(size[0], filters, kernel, stride=strides, padding=1, bias=bias))
            size = (filters, size[1] * 2, size[2] * 2)
            modules += [nn.Sigmoid()] if activation == ["sigmoid"] else []
        elif kind == "leaky":
            modules.append(nn.LeakyReLU(args[0]))
        elif kind == "reshape":
            height, width, channels = args[0]
            size = (channels, height, width)
            modules.append(nn.Unflatten(1, size))
        elif kind == "bn":
            modules.append(nn.BatchNorm2d(size[0], eps=1e-3, momentum=0.01) if len(size) == 3
                           else nn.BatchNorm1d(size[0], eps=1e-3, momentum=0.01))
        elif kind == "relu":
            modules.append(nn.ReLU())
        elif kind == "maxpool":
            pool, strides, padding = (*args, None, "valid")[:3] if len(args) == 1 else args
            strides = strides or pool
            pads, size = same_padding(size, pool, strides, padding)
            modules += [nn.ConstantPad2d(pads, float("-inf")), nn.MaxPool2d(pool, stride=strides)]  # TF: pads never win
        elif kind == "dropout":
            modules.append(nn.Dropout(args[0]))
        elif kind == "flatten":
            modules.append(nn.Flatten())
            size = (size[0] * size[1] * size[2],)
        elif kind in ("dense", "head"):
            units = args[0] if kind == "dense" else CLASSES
            bias = args[2] if kind == "dense" and len(args) > 2 else True
            modules.append(nn.Linear(size[0], units, bias=bias))
            modules += [nn.ReLU()] if kind == "dense" and args[1:2] == ["relu"] else []
            size = (units,)
    model = nn.Sequential(*modules)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.001, eps=1e-7)
    # from logits: the fused softmax + cross-entropy Keras and numcnn use too
    loss_fn = nn.MSELoss() if loss == "mse" else nn.CrossEntropyLoss()

    def as_torch(a):  # NHWC images -> NCHW; feature vectors as they are
        tensor = torch.from_numpy(a)
        return tensor.permute(0, 3, 1, 2).contiguous() if tensor.ndim == 4 else tensor

    def step(x, y):
        optimizer.zero_grad()
        loss = loss_fn(model(as_torch(x)), as_torch(y))
        loss.backward()
        optimizer.step()
        return float(loss)

    def infer(x):
        model.eval()
        with torch.no_grad():
            out = model(as_torch(x)).numpy()
        model.train()
        return out

    return step, infer


def same_padding(size, window, strides, padding):
    """TF's padding for a window on a (C, H, W) map — 'same': ``OH = ceil(H / s)``, the odd extra row/column at
    the bottom/right — as PyTorch's pad order (left, right, top, bottom), and the output (C, OH, OW)."""
    channels, height, width = size
    if padding == "valid":
        return (0, 0, 0, 0), (channels, (height - window) // strides + 1, (width - window) // strides + 1)
    out_h, out_w = -(-height // strides), -(-width // strides)
    pad_h = max((out_h - 1) * strides + window - height, 0)
    pad_w = max((out_w - 1) * strides + window - width, 0)
    return (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2), (channels, out_h, out_w)


BUILDERS = {"numcnn": numcnn_model, "keras": keras_model, "torch": torch_model}


INFERENCE_BATCH = 256  # images per inference call


def worker(framework: str, architecture: str, batch: int, steps: int, warmup: int, profile: bool = False) -> dict:
    """Seconds per training step and per inference call of ``INFERENCE_BATCH`` images (medians of ``steps``
    timed calls after ``warmup``: on a shared machine a burst of other work inflates a mean, not a median),
    and the process's peak RSS, in this process; with ``profile`` (numcnn) also its ``numcnn_profile``."""
    import resource

    if framework == "numcnn":
        import numcnn  # noqa: F401  (before NumPy, as numcnn asks: its thread settings only work then)
    import numpy as np

    if framework == "torch":
        import torch

        torch.set_num_threads(THREADS)
    shape, spec, target_shape = architecture_parts(architecture)
    step, infer = BUILDERS[framework](shape, spec, loss_name(target_shape))
    rng = np.random.default_rng(0)
    x = rng.random((batch, *shape), dtype=np.float32)
    y = (rng.integers(0, CLASSES, batch) if target_shape is None
         else rng.random((batch, *target_shape), dtype=np.float32))
    x_infer = rng.random((INFERENCE_BATCH, *shape), dtype=np.float32)
    result = {}
    for name, call in (("step_s", lambda: step(x, y)), ("infer_s", lambda: infer(x_infer))):
        for _ in range(warmup):
            call()
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        result[name] = statistics.median(times)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if profile and framework == "numcnn":  # after the peak RSS: the profile is not part of the measurement
        result["profile"] = numcnn_profile(architecture, batch, steps)
    return result


def step_profile(model, x, repeats: int, x_infer=None) -> dict:
    """Where numcnn's time goes: per step of ``model.steps()`` (one layer or a fused pair, as training runs
    them) the median ms of its training-mode forward and of its backward (on a random output gradient), and,
    with ``x_infer``, per step of ``model.inference_steps()`` the median ms of its inference forward."""
    import numpy as np

    rng = np.random.default_rng(1)

    def named(step, **times):
        layers = model.layers[step[0]:step[1] + 1]
        return {"step": " + ".join(type(layer).__name__ for layer in layers),
                "layers": [layer.name for layer in layers], **times}

    def median_ms(call):
        times = []
        for _ in range(repeats + 1):  # the first call is not counted (caches, lazily compiled variants)
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        return 1e3 * statistics.median(times[1:])

    training, h = [], x
    for step in model.steps():
        dy = rng.normal(size=(len(x), *model.layers[step[1]].output_shape)).astype(x.dtype)
        forward = median_ms(lambda: model.step_forward(step, h, training=True))
        out = model.step_forward(step, h, training=True)  # (the caches the backward reads)
        backward = median_ms(lambda: model.step_backward(step, dy, need_input_gradient=step[0] > 0))
        training.append(named(step, forward_ms=forward, backward_ms=backward))
        h = out
    inference, h = [], x_infer
    for step in model.inference_steps() if x_infer is not None else []:
        inference.append(named(step, forward_ms=median_ms(lambda: model.step_forward(step, h))))
        h = model.step_forward(step, h)
    return {"training": training, "inference": inference}


def numcnn_profile(architecture: str, batch: int, repeats: int) -> dict:
    """``step_profile`` of the architecture's numcnn model on random data, ``batch`` images for training and
    ``INFERENCE_BATCH`` for inference."""
    import numpy as np

    import numcnn
    from numcnn import layers

    shape, spec, target_shape = architecture_parts(architecture)
    model = numcnn.Sequential(build_layers(layers, shape, spec, layers.Input), seed=0)
    model.compile("adam", loss_name(target_shape))
    rng = np.random.default_rng(0)
    return step_profile(model, rng.random((batch, *shape), dtype=np.float32), repeats,
                        rng.random((INFERENCE_BATCH, *shape), dtype=np.float32))


def training_flops(architecture: str, batch: int) -> tuple[float, float]:
    """``(direct, as_run)``: floating-point operations of one training step's convolutions and dense layers
    (2 per multiply-add; forward, input gradient except the first layer's, weight gradient), directly and
    as numcnn runs them: Winograd F(m x m, 3x3)'s (m+2)² / (9 m²) of the multiplications (F(4x4, 3x3): 36/144) on
    the convolutions that ``kernels.conv.use_winograd`` sends to it (never a Conv2D fused with its MaxPooling2D
    in training, the only place these counts are used)."""
    import numcnn
    from numcnn import layers

    shape, spec, _ = architecture_parts(architecture)
    model = numcnn.Sequential(build_layers(layers, shape, spec, layers.Input), seed=0)
    import numpy as np

    from numcnn.kernels.conv import WINOGRAD_TILE, use_winograd

    fused = {first for first, last in model.steps() if last > first}
    direct = winograd = 0.0
    first = True
    for index, layer in enumerate(model.layers):
        if not isinstance(layer, (layers.Conv2D, layers.Conv2DTranspose, layers.Dense)):
            continue
        kernel = layer.params["kernel"]
        # a kernel's multiply-adds happen once per output position (Conv2D) or input position (transpose)
        positions = {layers.Conv2D: layer.output_shape, layers.Conv2DTranspose: layer.input_shape}.get(type(layer))
        out_positions = np.prod(positions[:-1]) if positions else 1
        forward = 2.0 * batch * out_positions * kernel.size
        total = forward * (2 if first else 3)
        direct += total
        fast = isinstance(layer, layers.Conv2D) and index not in fused and use_winograd(
            kernel.shape, layer.strides, layer.output_shape[:2])
        winograd += total * ((WINOGRAD_TILE + 2) ** 2 / (9 * WINOGRAD_TILE ** 2) if fast else 1)
        first = False
    return direct, winograd


# ----------------------------------------------------------------------------------------------
# The driver
# ----------------------------------------------------------------------------------------------
def importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorflow" if name == "keras" else name) is not None


def measure(framework, architecture, batch, args, profile=False) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS), "OPENBLAS_NUM_THREADS": str(THREADS),
           "NUMBA_NUM_THREADS": str(THREADS), "TF_NUM_INTRAOP_THREADS": str(THREADS),
           "TF_NUM_INTEROP_THREADS": "1"}
    command = [sys.executable, __file__, "--worker", framework, architecture, str(batch), str(args.steps),
               str(args.warmup), str(int(profile))]
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=HERE.parent)
    if result.returncode != 0:
        raise RuntimeError(f"{framework} on {architecture!r} failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def faster_peer_ratio(milliseconds: dict):
    """numcnn's time over the faster peer's (< 1: numcnn is faster), or None without numcnn or a peer."""
    peers = [t for f, t in milliseconds.items() if f != "numcnn"]
    return milliseconds["numcnn"] / min(peers) if peers and "numcnn" in milliseconds else None


def profile_lines(architectures, batch, times, summary) -> list[str]:
    """Markdown: numcnn's per-step profile of each architecture (``step_profile``), and what its training step
    spends outside the steps' forward and backward: the loss, the optimizer, Python, and the difference between
    a step measured alone (repeated: its data in cache) and in a training step (after the other steps)."""
    lines = []
    for architecture in architectures:
        profiled = [r["profile"] for r in times.get(("numcnn", architecture, batch), []) if "profile" in r]
        if not profiled:
            continue
        profile = profiled[0]
        step_ms = next(e["train_ms"]["numcnn"] for e in summary if e["architecture"] == architecture
                       and e["batch"] == batch)
        inside = sum(row["forward_ms"] + row["backward_ms"] for row in profile["training"])
        lines += ["", f"numcnn per step, {architecture} (training batch {batch}, inference {INFERENCE_BATCH} "
                      "images; median ms):", "", "| training step | forward | backward |", "|---|---|---|"]
        lines += [f"| {row['step']} | {row['forward_ms']:.2f} | {row['backward_ms']:.2f} |"
                  for row in profile["training"]]
        lines += [f"| *the rest: loss, optimizer, Python, colder caches (the whole step's {step_ms:.2f} ms less "
                  f"the steps' sum)* | {step_ms - inside:.2f} | |", "", "| inference step | forward |", "|---|---|"]
        lines += [f"| {row['step']} | {row['forward_ms']:.2f} |" for row in profile["inference"]]
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke mode: one round, two timed steps")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (medians are over these)")
    parser.add_argument("--steps", type=int, default=12, help="timed training steps per measurement")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation, caches)")
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--frameworks", nargs="+", default=list(BUILDERS), choices=list(BUILDERS))
    parser.add_argument("--architectures", nargs="+", default=list(ARCHITECTURES), choices=list(ARCHITECTURES),
                        metavar="NAME", help="a subset of the suite (default: all)")
    parser.add_argument("--out", default=str(HERE / "results" / "architectures"))
    parser.add_argument("--worker", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        framework, architecture, batch, steps, warmup, profile = args.worker
        print(json.dumps(worker(framework, architecture, int(batch), int(steps), int(warmup), profile == "1")))
        return 0
    if args.quick:
        args.rounds, args.steps, args.warmup, args.batches = 1, 2, 1, [16]
    sys.path.insert(0, str(HERE))
    from run import SGEMM_N, cpu_name, sgemm_gflops

    frameworks = [f for f in args.frameworks if importable(f)]
    times = {(f, a, b): [] for f in frameworks for a in args.architectures for b in args.batches}
    for round_ in range(args.rounds):
        order = frameworks if round_ % 2 == 0 else frameworks[::-1]  # alternate who runs first
        for architecture in args.architectures:
            for batch in args.batches:
                for framework in order:
                    print(f"round {round_ + 1}/{args.rounds}: {framework}, {architecture}, batch {batch}",
                          file=sys.stderr)
                    profile = round_ == 0 and batch == args.batches[0]  # one per-step profile per architecture
                    times[(framework, architecture, batch)].append(
                        measure(framework, architecture, batch, args, profile))
    peak = sgemm_gflops()
    lines = [f"CPU: {cpu_name()}, {os.cpu_count()} cores; {THREADS} threads per framework; OpenBLAS sgemm "
             f"(n = {SGEMM_N}) {peak:.0f} GFLOP/s; random data, Adam; training: median of {args.steps} steps after "
             f"{args.warmup} warm-up; inference: {INFERENCE_BATCH} images per call; median of {args.rounds} rounds",
             "",
             "| architecture | batch | train ms: " + " / ".join(frameworks) + " | numcnn / faster peer | "
             "numcnn GFLOP/s (% of sgemm; with Winograd's count where it runs) | infer ms: " + " / ".join(frameworks)
             + " | numcnn / faster peer | peak RSS MB: " + " / ".join(frameworks) + " |",
             "|---|---|---|---|---|---|---|---|"]
    summary = []
    for architecture in args.architectures:
        for batch in args.batches:
            runs = {f: times[(f, architecture, batch)] for f in frameworks}
            train = {f: statistics.median(r["step_s"] for r in runs[f]) * 1e3 for f in frameworks}
            infer = {f: statistics.median(r["infer_s"] for r in runs[f]) * 1e3 for f in frameworks}
            rss = {f: max(r["peak_rss_mb"] for r in runs[f]) for f in frameworks}
            ratios = [faster_peer_ratio(t) for t in (train, infer)]
            direct, winograd = training_flops(architecture, batch)
            entry = {"architecture": architecture, "batch": batch, "train_ms": train, "infer_ms": infer,
                     "peak_rss_mb": rss, "train_ratio": ratios[0], "infer_ratio": ratios[1],
                     "training_gflop": direct / 1e9, "training_gflop_winograd": winograd / 1e9}
            summary.append(entry)
            rate = ""
            if "numcnn" in train:
                achieved = direct / train["numcnn"] / 1e6
                rate = f"{achieved:.0f} ({100 * achieved / peak:.0f}%; {winograd / train['numcnn'] / 1e6:.0f})"
            shown = [f"{r:.2f}" if r is not None else "" for r in ratios]
            lines.append(f"| {architecture} | {batch} | " + " / ".join(f"{train[f]:.1f}" for f in frameworks)
                         + f" | {shown[0]} | {rate} | " + " / ".join(f"{infer[f]:.0f}" for f in frameworks)
                         + f" | {shown[1]} | " + " / ".join(f"{rss[f]:.0f}" for f in frameworks) + " |")
    lines += profile_lines(args.architectures, args.batches[0], times, summary)
    table = "\n".join(lines)
    print(table)
    sys.path.insert(0, str(HERE.parent))
    from numcnn.io import atomic_write_text

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out + ".json", json.dumps({"cpu": cpu_name(), "summary": summary,
                                                      "sgemm_gflops": peak,
                                                      "runs": {"|".join(map(str, k)): v for k, v in times.items()}},
                                                     indent=1))
    atomic_write_text(args.out + ".md", table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A conditional DCGAN (Radford et al. 2016) with an auxiliary classifier (AC-GAN, Odena et al. 2017), by hand.

Two plain ``Sequential`` networks::

    generator G:     [z, onehot(label)] (latent + K) -> Dense(H/4 * W/4 * f2, no bias) -> BatchNormalization(0.9)
                     -> LeakyReLU(0.2) -> Reshape -> Conv2DTranspose(f1, 4, s2, same, no bias)
                     -> BatchNormalization(0.9) -> LeakyReLU(0.2) -> Conv2DTranspose(C, 4, s2, same, sigmoid)
    discriminator D: image (H, W, C) -> Conv2D(f1, 4, s2, same) -> LeakyReLU(0.2) -> Dropout
                     -> Conv2D(f2, 4, s2, same) -> LeakyReLU(0.2) -> Dropout -> Flatten -> Dense(1 + K)

D's first output is the real/fake logit ``d``; the other ``K`` are class logits ``c`` (the auxiliary
classifier: it is what makes G draw *the asked-for* class, where a plain conditional DCGAN draws many
malformed digits). G outputs pixels in [0, 1] (sigmoid), the range of the data.

**Losses** (means over the N images of a batch; ``BCE(l, t) = max(l, 0) - l t + log(1 + exp(-|l|))``,
``CE`` the softmax cross-entropy)::

    L_D = mean BCE(d_real, 1 - s) + mean BCE(d_fake, 0) + mean CE(c_real, y_real)
    L_G = mean BCE(d_fake, 1) + w * mean CE(c_fake, y_fake)     (the non-saturating generator loss)

with ``s = label_smoothing`` (one-sided label smoothing, Salimans et al. 2016; default 0) and ``w =
class_weight`` (default 1, AC-GAN's loss). ``w`` trades class fidelity against variety: the class term pulls G
towards one easily classified template per class (measured on MNIST, README "Generative CNNs").

**Gradients by hand.** D's: ``dL_D/dd = (sigmoid(d) - t) / N`` (t = 1 - s real, 0 fake) and
``dL_D/dc = (softmax(c) - onehot(y)) / N`` on the real rows, then ``D.backward``. G's: the
same derivatives of ``L_G`` w.r.t. D's outputs on the fakes, ``(sigmoid(d_fake) - 1) / N`` and
``w (softmax(c_fake) - onehot) / N``;
``D.backward`` of them **returns D's input gradient** ``dL_G/d(fake image)``, which is exactly the gradient
at G's output, and ``G.backward`` of it fills G's gradients. (That backward also fills D's gradients with those
of ``L_G``; they are discarded: D follows ``L_D`` only.)

One training step (as the TensorFlow DCGAN tutorial: both gradients from the same weights, then both
updates): G makes ``fake = G([z, onehot(y_fake)])`` once (training mode: batch statistics); D's gradients of
``L_D`` on ``[real; fake]``; G's gradients of ``L_G`` through a second D pass on ``fake``; one Adam step each.
"""

from __future__ import annotations

import numpy as np

from .generative import Generator, bce_from_logits, one_hot, sigmoid, softmax_cross_entropy


def generator_network(image_shape, num_classes, latent_dim, filters=(64, 128), seed=0, dtype="float32"):
    """G: ``[z, onehot(label)]`` -> images (N, H, W, C) in [0, 1]."""
    from ..layers import BatchNormalization, Conv2DTranspose, Dense, Input, LeakyReLU, Reshape
    from ..model import Sequential

    h, w, c = image_shape
    return Sequential([
        Input((latent_dim + num_classes,)),
        Dense((h // 4) * (w // 4) * filters[1], use_bias=False),
        BatchNormalization(momentum=0.9),  # 0.9, not 0.99: the moving statistics catch up in a short training
        LeakyReLU(0.2),
        Reshape((h // 4, w // 4, filters[1])),
        Conv2DTranspose(filters[0], 4, strides=2, padding="same", use_bias=False),
        BatchNormalization(momentum=0.9),  # 0.9, not 0.99: the moving statistics catch up in a short training
        LeakyReLU(0.2),
        Conv2DTranspose(c, 4, strides=2, padding="same", activation="sigmoid"),
    ], name="generator", seed=seed, dtype=dtype)


def discriminator_network(image_shape, num_classes, filters=(64, 128), dropout=0.3, seed=0, dtype="float32"):
    """D: images -> ``[d, c_0 .. c_{K-1}]``: the real/fake logit and K class logits (N, 1 + K)."""
    from ..layers import Conv2D, Dense, Dropout, Flatten, Input, LeakyReLU
    from ..model import Sequential

    layers = [Input(tuple(image_shape)),
              Conv2D(filters[0], 4, strides=2, padding="same"), LeakyReLU(0.2)]
    layers += [Dropout(dropout)] if dropout else []
    layers += [Conv2D(filters[1], 4, strides=2, padding="same"), LeakyReLU(0.2)]
    layers += [Dropout(dropout)] if dropout else []
    layers += [Flatten(), Dense(1 + num_classes)]
    return Sequential(layers, name="discriminator", seed=seed, dtype=dtype)


class ConditionalGAN(Generator):
    """A conditional DCGAN with an auxiliary classifier: ``generator`` and ``discriminator`` are plain
    ``Sequential`` models (architecture, losses and hand-written gradients: the module docstring)."""

    kind = "gan"
    # 80 epochs, not 40: measured with benchmarks/generation_quality.py (MNIST, seed 0; judge agreement /
    # diversity / Frechet), 40 epochs stop in a phase of partial mode collapse (95% / 0.52 / 28.9: one template
    # per class) that longer training leaves behind (80: 100% / 0.75 / 14.7, in 475 s of CPU on one thread)
    DEFAULTS = {"epochs": 80, "batch_size": 64, "learning_rate": 2e-4}

    def __init__(self, image_shape, num_classes=10, latent_dim=32, filters=(32, 64), dropout=0.3, class_weight=1.0,
                 label_smoothing=0.0, seed=0, dtype="float32", generator=None, discriminator=None):
        super().__init__(image_shape, num_classes, latent_dim)
        if len(self.image_shape) != 3 or self.image_shape[0] % 4 or self.image_shape[1] % 4:
            raise ValueError(f"image_shape must be (H, W, C) with H, W multiples of 4, got {image_shape}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        if not class_weight >= 0:
            raise ValueError(f"class_weight must be >= 0, got {class_weight!r}")
        if not 0 <= label_smoothing < 0.5:
            raise ValueError(f"label_smoothing must be in [0, 0.5), got {label_smoothing!r}")
        self.class_weight = float(class_weight)
        self.label_smoothing = float(label_smoothing)
        self.filters = tuple(int(f) for f in filters)
        self.dropout = float(dropout)
        seeds = np.random.SeedSequence(seed).generate_state(2)
        self.generator = generator or generator_network(self.image_shape, num_classes, latent_dim, self.filters,
                                                        int(seeds[0]), dtype)
        self.discriminator = discriminator or discriminator_network(self.image_shape, num_classes, self.filters,
                                                                    self.dropout, int(seeds[1]), dtype)

    # --- files ----------------------------------------------------------------------------------
    def networks(self):
        return {"generator": self.generator, "discriminator": self.discriminator}

    def settings(self):
        return {"image_shape": list(self.image_shape), "num_classes": self.num_classes,
                "latent_dim": self.latent_dim, "filters": list(self.filters), "dropout": self.dropout,
                "class_weight": self.class_weight, "label_smoothing": self.label_smoothing}

    @classmethod
    def from_networks(cls, networks, **settings):
        return cls(**settings, generator=networks["generator"], discriminator=networks["discriminator"],
                   dtype=networks["generator"].dtype.name)

    def decode_network(self):
        return self.generator

    # --- the math ---------------------------------------------------------------------------------
    def _output_gradient(self, outputs, labels, target: float, class_weight: float):
        """Loss (sum of the means) and its gradient w.r.t. D's outputs (N, 1 + K): BCE of the first column
        against ``target`` (1 real, 0 fake, 1 - label_smoothing for D's real images), plus ``class_weight``
        times the class cross-entropy."""
        n = len(outputs)
        d, c = outputs[:, :1], outputs[:, 1:]
        target = outputs.dtype.type(target)
        loss = bce_from_logits(d, target).mean()
        gradient = np.zeros_like(outputs)
        gradient[:, :1] = (sigmoid(d) - target) / outputs.dtype.type(n)
        if class_weight:
            class_losses, dc = softmax_cross_entropy(c, labels)
            loss += class_weight * class_losses.mean()
            gradient[:, 1:] = dc * outputs.dtype.type(class_weight / n)
        return float(loss), gradient

    def loss_and_gradients(self, real, real_labels, z, fake_labels):
        """One training step's losses and gradients (no update): real images and labels, G's noise ``z``
        (N, latent) and the labels it is asked to draw. Returns ``(losses, generator_grads,
        discriminator_grads)``; ``losses`` has ``generator``, ``discriminator`` and ``class_accuracy_real``."""
        G, D = self.generator, self.discriminator
        dtype = G.dtype
        real = np.asarray(real, dtype)
        n_real = len(real)
        fake = G.forward(np.concatenate([np.asarray(z, dtype), one_hot(fake_labels, self.num_classes, dtype)], 1),
                         training=True)
        # D's step: L_D on [real; fake] in one pass (D has no batch statistics: one pass equals two).
        outputs = D.forward(np.concatenate([real, fake]), training=True)
        loss_real, grad_real = self._output_gradient(outputs[:n_real], real_labels, 1 - self.label_smoothing, 1.0)
        loss_fake, grad_fake = self._output_gradient(outputs[n_real:], fake_labels, 0.0, 0.0)
        D.backward(np.concatenate([grad_real, grad_fake]), need_input_gradient=False)
        discriminator_grads = [g.copy() for g in D.get_gradients()]
        accuracy = float(np.mean(np.argmax(outputs[:n_real, 1:], axis=1) == np.asarray(real_labels)))
        # G's step: L_G through D; D's input gradient is the gradient at G's output.
        outputs_fake = D.forward(fake, training=True)
        loss_generator, grad_generator = self._output_gradient(outputs_fake, fake_labels, 1.0, self.class_weight)
        dfake = D.backward(grad_generator)
        G.backward(dfake, need_input_gradient=False)
        losses = {"generator": loss_generator, "discriminator": loss_real + loss_fake,
                  "class_accuracy_real": accuracy}
        return losses, G.get_gradients(), discriminator_grads

    # --- training ---------------------------------------------------------------------------------
    def fit(self, x, y, epochs=None, batch_size=None, learning_rate=None, seed=0, progress=True):
        """Adam (beta_1 = 0.5, as DCGAN) for each network; ``default_rng(seed)`` shuffles and draws z and the
        fake labels (uniform over the classes)."""
        from tqdm.auto import tqdm

        from ..optimizers import Adam

        epochs = self.DEFAULTS["epochs"] if epochs is None else int(epochs)
        batch_size = self.DEFAULTS["batch_size"] if batch_size is None else int(batch_size)
        learning_rate = self.DEFAULTS["learning_rate"] if learning_rate is None else float(learning_rate)
        rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])
        optimizer_g, optimizer_d = Adam(learning_rate, beta_1=0.5), Adam(learning_rate, beta_1=0.5)
        keys = ("generator", "discriminator", "class_accuracy_real")
        for key in keys:
            self.history.setdefault(key, [])
        bar = tqdm(total=epochs * -(-len(x) // batch_size), desc="training GAN", unit="batch", disable=not progress)
        for _ in range(epochs):
            order = rng.permutation(len(x))
            sums = dict.fromkeys(keys, 0.0)
            for start in range(0, len(x), batch_size):
                batch = order[start:start + batch_size]
                z = rng.standard_normal((len(batch), self.latent_dim)).astype(self.generator.dtype)
                fake_labels = rng.integers(0, self.num_classes, len(batch))
                losses, g_grads, d_grads = self.loss_and_gradients(x[batch], y[batch], z, fake_labels)
                optimizer_d.apply(self.discriminator.trainable_params(), d_grads)
                optimizer_g.apply(self.generator.trainable_params(), g_grads)
                for key in keys:
                    sums[key] += losses[key] * len(batch)
                bar.update(1)
                bar.set_postfix(G=f"{losses['generator']:.2f}", D=f"{losses['discriminator']:.2f}")
            for key, total in sums.items():
                self.history[key].append(total / len(x))
        bar.close()
        return self

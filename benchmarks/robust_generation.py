"""Does robust training make better class images? Plain vs noise+FGSM-trained seed model, judged by the
independent classifier of tests/test_generate.py, at several step budgets, with and without the image prior.

    python benchmarks/robust_generation.py
"""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numcnn  # noqa: E402
from numcnn.datasets import load_dataset  # noqa: E402
from numcnn.generate import Prior, class_images, robust_fit  # noqa: E402
from numcnn.preprocessing import images_to_input  # noqa: E402
from tests.test_generate import judged_accuracy  # noqa: E402
from tests.test_generate import judge as judge_fixture  # noqa: E402


def main():
    (x, y), (xt, yt) = load_dataset("mnist-5k")
    x, xt, y, yt = images_to_input(x), images_to_input(xt), y.astype(np.int64), yt.astype(np.int64)
    judge = judge_fixture.__wrapped__(((x, y), (xt, yt)))
    plain = numcnn.seed_mnist_model(seed=0)
    plain.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    plain.fit(x, y, epochs=5, batch_size=32, seed=0, verbose=0)
    robust = numcnn.seed_mnist_model(seed=0)
    robust.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    robust_fit(robust, x, y, epochs=5, batch_size=32, seed=0, noise=0.1, fgsm_epsilon=0.1)
    print("| model | held-out accuracy | steps | judge: with prior | judge: no prior |")
    print("|---|---|---|---|---|")
    for name, model in (("plain", plain), ("noise + FGSM", robust)):
        accuracy = model.evaluate(xt, yt, verbose=0)[1]
        for steps in (16, 64, 256):
            with_prior = judged_accuracy(judge, class_images(model, range(10), range(10), steps=steps))
            without = judged_accuracy(judge, class_images(model, range(10), range(10), steps=steps, prior=Prior.off()))
            print(f"| {name} | {accuracy:.3f} | {steps} | {with_prior:.0%} | {without:.0%} |", flush=True)


if __name__ == "__main__":
    main()

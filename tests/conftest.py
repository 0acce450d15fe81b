"""Shared fixtures and CI honesty.

TensorFlow-dependent tests use the ``tf`` fixture: without TensorFlow they skip with one clear reason. Tests
that need the Debian package ``dataset-fashion-mnist`` skip without it (their skip reason names the package,
or they use the ``fashion_mnist_dir`` fixture). In CI (``CI=true``, as CI services set it) or with
``NUMCNN_REQUIRE_TF=1`` / ``NUMCNN_REQUIRE_DATA=1``, a missing requirement is a **failure** instead: CI must
not go green by skipping the checks behind the README's claims.
"""

import os
from pathlib import Path

import pytest

FASHION_MNIST_PACKAGE = "dataset-fashion-mnist"
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def required(what: str) -> bool:
    """Whether a missing ``what`` ("TF" or "DATA") must fail rather than skip."""
    return in_ci() or os.environ.get(f"NUMCNN_REQUIRE_{what}") == "1"


@pytest.fixture(scope="session")
def tf():
    """``(tensorflow, keras)`` imported with numcnn's settings (oneDNN off: see numcnn.verify)."""
    try:
        from numcnn.verify import import_tensorflow

        return import_tensorflow()
    except ImportError as error:
        if required("TF"):
            pytest.fail(f"TensorFlow is required here (CI or NUMCNN_REQUIRE_TF=1) but cannot be imported: {error}")
        pytest.skip("TensorFlow is not installed: pip install -e '.[tf]' to run the parity tests")


@pytest.fixture(scope="session")
def fashion_mnist_dir():
    """The folder of Debian's ``dataset-fashion-mnist`` (skips without it; fails in CI)."""
    if not FASHION_MNIST_DIR.is_dir():
        message = f"needs the Debian package {FASHION_MNIST_PACKAGE} ({FASHION_MNIST_DIR}); scripts/setup installs it"
        if required("DATA"):
            pytest.fail(f"{message} (required: CI or NUMCNN_REQUIRE_DATA=1)")
        pytest.skip(message)
    return FASHION_MNIST_DIR


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A test skipped for want of dataset-fashion-mnist (a ``skipif`` whose reason names the package) fails
    instead where the data is required: the same rule as the fixture, for tests written with ``skipif``."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and required("DATA") and FASHION_MNIST_PACKAGE in str(report.longrepr):
        report.outcome = "failed"
        report.longrepr = (f"{item.nodeid}: the Debian package {FASHION_MNIST_PACKAGE} is required here (CI or "
                           f"NUMCNN_REQUIRE_DATA=1) but {FASHION_MNIST_DIR} is missing; scripts/setup installs it")

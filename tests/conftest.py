"""Shared fixtures. TensorFlow-dependent tests use the ``tf`` fixture: without TensorFlow they skip with one
clear reason — except where ``NUMCNN_REQUIRE_TF=1`` (CI), where a missing TensorFlow is a failure."""

import os

import pytest


@pytest.fixture(scope="session")
def tf():
    """``(tensorflow, keras)`` imported with numcnn's settings (oneDNN off: see numcnn.verify)."""
    try:
        from numcnn.verify import import_tensorflow

        return import_tensorflow()
    except ImportError as error:
        if os.environ.get("NUMCNN_REQUIRE_TF") == "1":
            pytest.fail(f"TensorFlow is required here (NUMCNN_REQUIRE_TF=1) but cannot be imported: {error}")
        pytest.skip("TensorFlow is not installed: pip install -e '.[tf]' to run the parity tests")

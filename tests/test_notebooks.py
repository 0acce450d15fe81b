"""Every teaching notebook executes top to bottom (a broken notebook fails the build); run times are printed."""

import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


def test_notebooks_are_stored_without_outputs():
    assert len(NOTEBOOKS) == 9
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tf_if_needed):
    notebook = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    print(f"{path.name}: {time.perf_counter() - start:.1f} s")


@pytest.fixture
def tf_if_needed(request):
    """Notebooks 05 and 07 run their TensorFlow parts only with TF present: in CI (NUMCNN_REQUIRE_TF=1) it must be."""
    if "05_" in request.node.name or "07_" in request.node.name:
        request.getfixturevalue("tf")

"""The notebooks in notebooks/: stored without outputs, and each runs from top to bottom on real radiographs.

Every ``*.ipynb`` in notebooks/ is picked up. Running one needs the RSNA folder beside the repository
(skipped otherwise) and nbclient, nbformat and ipykernel (the ``test`` extra); select these tests with
``-m notebook``.
"""

import json
import os
from pathlib import Path

import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
# Each notebook is meant to finish in about two minutes on 2 cores with an empty feature cache; a cell
# past this limit is hung, not slow.
CELL_TIMEOUT_S = 300


def test_notebooks_are_found():
    # An empty glob would leave the parametrized tests below with nothing to run, silently.
    assert NOTEBOOKS, f"no notebooks found in {NOTEBOOK_DIR}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_is_stored_without_outputs(path):
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    dirty = [
        number
        for number, cell in enumerate(cells)
        if cell["cell_type"] == "code" and (cell.get("outputs") or cell.get("execution_count") is not None)
    ]
    assert not dirty, f"{path.name}: code cells {dirty} carry outputs or execution counts; clear them before committing"


@pytest.mark.notebook
@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_runs(path, data_dir):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    # conftest points the feature cache at a private temporary folder; the kernel must use it too, so
    # the notebook starts from an empty cache and leaves the user's ~/.cache alone.
    assert "BONEAGE_FEATURES_CACHE" in os.environ
    notebook = nbformat.read(path, as_version=4)
    # "python3" is ipykernel's own spec, which jupyter_client launches with this interpreter (the venv's).
    client = nbclient.NotebookClient(
        notebook, kernel_name="python3", timeout=CELL_TIMEOUT_S, resources={"metadata": {"path": str(NOTEBOOK_DIR)}}
    )
    client.execute(env=dict(os.environ))  # raises CellExecutionError, with the cell and its traceback, on an error

"""The four notebooks: committed clean, and executed headless in order with papermill.

The executing test registers a kernel for THIS interpreter in a temporary
``JUPYTER_PATH`` (nothing is installed into the user's Jupyter), runs
01 → 02 → 03 → 04 with every path parameter inside ``tmp_path`` and the
notebooks' default sizes, fails on any cell error, and checks that exactly
the expected figures were written as readable PNG files.
"""
from __future__ import annotations

import ast
import json
import sys
import time
from pathlib import Path

import cv2
import nbformat
import papermill
import pytest
from IPython.core.inputtransformer2 import TransformerManager

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
ORDER = ("01_eda", "02_training", "03_swa", "04_submission")
FIGURES = {
    "01_eda": ["01_images_per_category.png", "01_visibility.png", "01_positions.png", "01_norm_distance.png",
               "01_samples.png", "01_augmentation.png", "01_targets_per_level.png", "01_targets_refinenet.png"],
    "02_training": ["02_curves.png", "02_val_per_keypoint.png", "02_val_predictions.png", "02_heatmaps.png"],
    "03_swa": ["03_swa_lr.png", "03_swa_ne.png", "03_per_keypoint.png"],
    "04_submission": ["04_tta_options.png", "04_ensembles.png", "04_test_per_keypoint.png", "04_worst.png",
                      "04_worst_heatmaps.png"],
}
KERNEL_NAME = "fashion-gluon-tests"


def _read(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)


def _code_cells(notebook: nbformat.NotebookNode) -> list:
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def _python(source: str) -> ast.Module:
    """A code cell as Python (IPython magics such as ``%matplotlib inline`` translated)."""
    return ast.parse(TransformerManager().transform_cell(source))


def _parameters_cell(notebook: nbformat.NotebookNode):
    tagged = [cell for cell in _code_cells(notebook) if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1, f"expected one cell tagged 'parameters', found {len(tagged)}"
    return tagged[0]


def _declared_parameters(notebook: nbformat.NotebookNode) -> dict:
    """name -> default of the parameters cell; every statement must be ``name = literal``."""
    declared = {}
    for statement in _python(_parameters_cell(notebook).source).body:
        assert isinstance(statement, ast.Assign) and len(statement.targets) == 1, ast.unparse(statement)
        declared[statement.targets[0].id] = ast.literal_eval(statement.value)
    return declared


@pytest.mark.parametrize("name", ORDER)
def test_committed_notebook_is_clean(name):
    notebook = _read(name)
    nbformat.validate(notebook)
    for cell in _code_cells(notebook):
        assert cell.outputs == [], f"{name}: a code cell has outputs: {cell.source[:60]!r}"
        assert cell.execution_count is None, f"{name}: a code cell has an execution count"


@pytest.mark.parametrize("name", ORDER)
def test_notebook_is_a_tour_of_the_package(name):
    """Parameters papermill can read (with data_root and fig_dir), imports of fashion_gluon,
    and no function or class defined in the notebook: the logic lives in the package."""
    notebook = _read(name)
    declared = _declared_parameters(notebook)
    assert {"data_root", "fig_dir"} <= set(declared)
    sources = [cell.source for cell in _code_cells(notebook)]
    assert any("from fashion_gluon" in source for source in sources)
    for source in sources:
        defined = [node for node in ast.walk(_python(source))
                   if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
        assert not defined, f"{name} defines {[node.name for node in defined]}"


@pytest.fixture
def kernel_name(tmp_path, monkeypatch) -> str:
    """A kernelspec running this interpreter, visible only through a temporary JUPYTER_PATH."""
    spec = tmp_path / "jupyter" / "kernels" / KERNEL_NAME
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "fashion_gluon tests", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return KERNEL_NAME


def _png_ok(path: Path) -> bool:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and image is not None and min(image.shape[:2]) >= 50


@pytest.mark.slow
def test_notebooks_run_in_order(tmp_path, kernel_name):
    root = tmp_path / "runs"
    paths = {"data_root": root / "data", "run_dir": root / "run", "swa_dir": root / "swa",
             "out_dir": root / "submission", "fig_dir": root / "figures"}
    cwd = tmp_path / "notebooks"  # any default left relative ("../runs/...") would land in tmp_path too
    cwd.mkdir()
    seconds = {}
    for name in ORDER:
        declared = _declared_parameters(_read(name))
        parameters = {key: str(value) for key, value in paths.items() if key in declared}
        tic = time.perf_counter()
        papermill.execute_notebook(str(NOTEBOOK_DIR / f"{name}.ipynb"), str(tmp_path / f"{name}.out.ipynb"),
                                   parameters=parameters, kernel_name=kernel_name, cwd=str(cwd),
                                   progress_bar=False, log_output=False, start_timeout=120,
                                   execution_timeout=600)
        seconds[name] = time.perf_counter() - tic
        written = sorted(path.name for path in paths["fig_dir"].glob(f"{name[:2]}_*"))
        assert written == sorted(FIGURES[name]), f"{name} wrote {written}"
        for figure in FIGURES[name]:
            assert _png_ok(paths["fig_dir"] / figure), f"{figure} is not a readable PNG"
    assert (paths["out_dir"] / "submission.csv").stat().st_size > 0
    print("notebook seconds:", {name: round(s, 1) for name, s in seconds.items()},
          f"total {sum(seconds.values()):.1f}")

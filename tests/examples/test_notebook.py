"""examples/quickstart.ipynb runs top to bottom in a fresh kernel of this interpreter (the README points at it)."""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "quickstart.ipynb"


@pytest.fixture
def python3_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A ``python3`` kernelspec that starts ``sys.executable``, found first on JUPYTER_PATH.

    A fresh venv may hold no kernelspec (or one for another interpreter); writing our own into a temporary prefix
    makes the test run the notebook with the very environment under test, without touching the venv.
    """
    kernelspec = pytest.importorskip("ipykernel.kernelspec", reason="ipykernel is needed (pip install '.[test]')")
    kernelspec.install(kernel_name="python3", prefix=str(tmp_path))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "share" / "jupyter"))
    return "python3"


@pytest.mark.slow
def test_quickstart_notebook_runs(python3_kernel: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the notebook's run folders (tempfile.mkdtemp) land here
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(notebook, kernel_name=python3_kernel, timeout=300,
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]
    images = [out for out in outputs if "image/png" in out.get("data", {})]
    assert len(images) >= 4  # collapse plot, 2 attention figures, prediction
    text = "".join(out.get("text", "") for out in outputs)
    assert "test balanced accuracy" in text and "best head" in text and "missing:" in text

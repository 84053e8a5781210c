"""Every notebook runs top to bottom on a stored sweep, and is committed without outputs."""

from pathlib import Path

import nbclient
import nbformat
import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path, sweep_dir, monkeypatch):
    monkeypatch.setenv("ICL_SWEEP_DIR", str(sweep_dir))
    nb = nbformat.read(path, as_version=4)
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK_DIR)}}).execute()
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert str(sweep_dir) in text


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: strip outputs before commit"


def test_there_are_notebooks():
    assert NOTEBOOKS, f"no notebooks in {NOTEBOOK_DIR}"


@pytest.mark.parametrize("start", ["repository root", "notebooks/"])
@pytest.mark.parametrize("env", [None, "results/cpu_demo"])
def test_explore_notebook_finds_the_demo_from_the_root_and_from_notebooks(start, env, monkeypatch):
    """Without ICL_SWEEP_DIR, or with a path relative to the repository root, the notebook finds results/cpu_demo
    whether the kernel starts at the root (nbclient) or in notebooks/ (Jupyter opened on the file, `jupyter
    execute`). Only its path cell runs here."""
    if env is None:
        monkeypatch.delenv("ICL_SWEEP_DIR", raising=False)
    else:
        monkeypatch.setenv("ICL_SWEEP_DIR", env)
    cwd = NOTEBOOK_DIR.parent if start == "repository root" else NOTEBOOK_DIR
    nb = nbformat.read(NOTEBOOK_DIR / "explore_sweep.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    nb.cells = [code[0], nbformat.v4.new_code_cell("print(SWEEP_DIR.resolve())")]
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(cwd)}}).execute()
    printed = nb.cells[-1].outputs[0]["text"].strip()
    assert printed == str((NOTEBOOK_DIR.parent / "results" / "cpu_demo").resolve())


def test_explore_notebook_on_a_folder_without_a_summary_says_what_to_run(tmp_path, monkeypatch):
    """ICL_SWEEP_DIR set to a sweep folder not yet summarised: the store's message (run the sweep or --summarize),
    not a complaint about where the folder was looked for."""
    (tmp_path / "runs").mkdir()
    monkeypatch.setenv("ICL_SWEEP_DIR", str(tmp_path))
    nb = nbformat.read(NOTEBOOK_DIR / "explore_sweep.ipynb", as_version=4)
    nb.cells = [c for c in nb.cells if c.cell_type == "code"][:2]
    with pytest.raises(nbclient.exceptions.CellExecutionError, match=r"no sweep_summary\.json in .*--summarize"):
        nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                                resources={"metadata": {"path": str(NOTEBOOK_DIR)}}).execute()


@pytest.mark.parametrize("name", ["cpu_budgets", "cpu_dimension", "cpu_reference"])
def test_explore_notebook_runs_on_sweeps_of_several_grids_and_settings(name, monkeypatch):
    """cpu_budgets: budgets with different M grids; cpu_dimension: three settings (D) with different K, shown one
    setting at a time, each with its per-position figure; cpu_reference: one seed, its replicates' M* labelled
    evaluation noise only."""
    sweep = NOTEBOOK_DIR.parent / "results" / name
    monkeypatch.setenv("ICL_SWEEP_DIR", str(sweep))
    nb = nbformat.read(NOTEBOOK_DIR / "explore_sweep.ipynb", as_version=4)
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK_DIR)}}).execute()
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "training dynamics on T_true" in text
    if name == "cpu_dimension":
        assert "this notebook shows 'D=1, K=4, noise_std=0.353553'" in text and "no common context axis" not in text
    if name == "cpu_reference":
        assert "curve; interval over evaluation noise only (1 seed)" in text


def test_the_committed_notebook_is_what_its_generator_writes():
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_explore_sweep", NOTEBOOK_DIR / "make_explore_sweep.py")
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    committed = nbformat.read(NOTEBOOK_DIR / "explore_sweep.ipynb", as_version=4)
    assert [c.source for c in generator.build().cells] == [c.source for c in committed.cells]

"""The notebooks in notebooks/ run top to bottom, offline, and are committed with their outputs cleared.

Each notebook is executed by nbclient in a fresh Python kernel (ipykernel, from the ``notebooks``
extra), as a newcomer would run it: from the notebooks/ folder, with real provider calls blocked
(``AIAPP_BLOCK_PROVIDER_CALLS=1``), a throwaway ``$HOME`` and ``$TMPDIR`` so that nothing is written
outside the test's folder (the notebooks make their own temporary ``AIAPP_HOME`` there).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))


def test_there_are_notebooks_for_each_topic() -> None:
    names = {p.stem for p in PATHS}
    assert {"01_quickstart", "02_rag_and_evals", "03_agents_and_tools", "04_eval_review_loop"} <= names


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_notebook_is_committed_without_outputs(path: Path) -> None:
    book = nbformat.read(path, as_version=4)
    nbformat.validate(book)
    dirty = [
        n
        for n, cell in enumerate(book.cells)
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)
    ]
    assert not dirty, f"{path.name}: cells {dirty} have outputs; clear them before committing"
    assert "widgets" not in book.metadata, f"{path.name}: widget state in the notebook metadata"


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_notebook_uses_only_the_public_api(path: Path) -> None:
    book = nbformat.read(path, as_version=4)
    code = "\n".join(cell.source for cell in book.cells if cell.cell_type == "code")
    private = [
        line.strip()
        for line in code.splitlines()
        if line.strip().startswith(("from aiapp", "import aiapp")) and "._" in line.split(" import ")[0]
    ]
    assert not private, f"{path.name} imports private modules: {private}"


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_notebook_runs_top_to_bottom_offline(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    # The kernel inherits this environment: no real provider call, nothing outside tmp_path.
    monkeypatch.setenv("AIAPP_BLOCK_PROVIDER_CALLS", "1")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setenv("AIAPP_HOME", str(tmp_path / "unused-aiapp-home"))
    for key, value in {
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)

    book = nbformat.read(path, as_version=4)
    client = NotebookClient(
        book,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    start = time.perf_counter()
    try:
        client.execute()
    except CellExecutionError as exc:
        pytest.fail(f"{path.name} failed:\n{exc}")
    with capsys.disabled():
        print(f"\n{path.name}: ran in {time.perf_counter() - start:.1f} s")

    errors = [
        out
        for cell in book.cells
        if cell.cell_type == "code"
        for out in cell.outputs
        if out.output_type == "error"
        or (out.output_type == "stream" and out.name == "stderr" and "Traceback" in out.text)
    ]
    assert not errors, f"{path.name}: {errors}"
    first = "".join(out.get("text", "") for out in book.cells[1].outputs)
    assert f"state: {tmp_path}" in first, "the notebook must make its own AIAPP_HOME (under $TMPDIR)"
    assert not (home / ".aiapp").exists(), "a notebook wrote to ~/.aiapp"
    assert not (tmp_path / "unused-aiapp-home").exists()
    assert not list(NOTEBOOKS.glob("*.db")), "a notebook left state in notebooks/"
    assert os.environ["AIAPP_BLOCK_PROVIDER_CALLS"] == "1"

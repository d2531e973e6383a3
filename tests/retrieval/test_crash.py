"""A process killed mid-ingest leaves the previous version searchable; a re-run completes cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from _helpers import HashEmbedder, make_settings

from aiapp.retrieval import Index
from aiapp.retrieval._chunking import point_id_for

HERE = Path(__file__).parent

CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    sys.path.insert(0, {here!r})
    from _helpers import HashEmbedder, StallingEmbedder, make_settings
    from aiapp.retrieval import Index

    home, corpus, marker, phase = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
    settings = make_settings(home, chunk_tokens=64, chunk_overlap=8, url={url!r})
    embedder = StallingEmbedder(marker) if phase == "embed" else HashEmbedder()

    def progress(step, done, total):
        if step == phase == "write":
            marker.write_text("writing")  # the new version is half written here
            time.sleep(120)

    Index.open("test", settings, embedder=embedder).ingest(corpus, progress=progress)
    """
)


def kill_mid_ingest(home: Path, corpus: Path, tmp_path: Path, phase: str, url: str | None) -> None:
    marker = tmp_path / f"marker-{phase}"
    code = CHILD.format(here=str(HERE), url=url)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(home), str(corpus), str(marker), phase],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            if child.poll() is not None:
                _, err = child.communicate()
                pytest.fail(f"ingest child exited early ({child.returncode}): {err.decode()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail("ingest child never reached the crash point")
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL


@pytest.mark.parametrize("phase", ["embed", "write"])
def test_killed_ingest_keeps_previous_version(
    aiapp_home: Path, corpus: Path, tmp_path: Path, phase: str
) -> None:
    settings = make_settings(aiapp_home, chunk_tokens=64, chunk_overlap=8)
    with Index.open("test", settings, embedder=HashEmbedder()) as index:
        first = index.ingest(corpus)
        before = index.search("GPUs compute capability", k=3)
        assert before[0].source == "guide/gpu.md"

    # Grow the corpus so the next ingest has real work, then kill it half-way.
    for i in range(40):
        (corpus / "bulk" / f"doc{i}.md").parent.mkdir(exist_ok=True)
        (corpus / "bulk" / f"doc{i}.md").write_text(f"# Bulk {i}\n\nFiller document number {i} about GPUs.\n")
    (corpus / "guide" / "gpu.md").write_text("# GPUs\n\nOnly Intel Arc cards now.\n")
    kill_mid_ingest(aiapp_home, corpus, tmp_path, phase, None)

    with Index.open("test", settings, embedder=HashEmbedder()) as index:
        assert index.corpus_version == first.corpus_version  # the crash published nothing
        after = index.search("GPUs compute capability", k=3)
        assert after[0].chunk_id == before[0].chunk_id  # (lower ranks tie on hashed embeddings)
        assert [round(h.score, 5) for h in after] == [round(h.score, 5) for h in before]
        assert index.count() == first.chunks_total

        report = index.ingest(corpus)  # the re-run clears the leftovers and completes
        assert (report.added, report.changed, report.removed, report.unchanged) == (40, 1, 0, 3)
        assert report.previous_version == first.corpus_version
        manifest = index.manifest
        assert manifest is not None and manifest.generation == 2
        shard, _ = index._current_shard()
        expected = {point_id_for(c) for entry in manifest.documents.values() for c in entry.chunks}
        assert shard.ids() == expected and shard.count() == manifest.chunk_count  # no duplicates
        assert index.store.versions() == sorted([manifest.parent or "", manifest.store_version])
        assert index.search("Intel Arc", k=1)[0].source == "guide/gpu.md"

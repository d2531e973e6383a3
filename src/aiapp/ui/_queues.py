"""Building review queues from a suite's eval run or from recent traces (``aiapp review create`` and the console)."""

from __future__ import annotations

from pathlib import Path

from aiapp.errors import InputError
from aiapp.evals import load_suite
from aiapp.evals._review import Queue, ReviewItem, create_queue, items_from_run
from aiapp.evals.scorers._human import Rubric
from aiapp.ui._evals import EvalStore
from aiapp.ui._traces import Filters, TraceReader, trace_review_items


def suite_criteria(suite_path: Path) -> str | None:
    """The first ``criteria`` a scorer of the suite states (a judge's or a human rubric's)."""
    suite = load_suite(suite_path)
    for spec in suite.scorers:
        criteria = spec.params.get("criteria")
        if isinstance(criteria, str) and criteria.strip():
            return criteria.strip()
    return None


def queue_from_suite(
    home: Path,
    root: Path,
    suite: str,
    *,
    run: str | None = None,
    name: str | None = None,
    criteria: str | None = None,
    scale: tuple[int, int] = (1, 5),
) -> tuple[Queue, int]:
    """Write a queue of the suite's newest (or ``run``) eval run; returns it and its item count.

    Raises:
        InputError: no such run, or no criteria given and none in ``<root>/evals/<suite>.yaml``.
    """
    store = EvalStore(home)
    chosen = store.run(suite, run) if run else store.latest(suite)
    if chosen is None:
        raise InputError(f"no eval run of suite {suite!r} under {store.root}: run `aiapp eval` first")
    suite_file = root / "evals" / f"{suite}.yaml"
    text = criteria or (suite_criteria(suite_file) if suite_file.is_file() else None)
    if not text:
        raise InputError(f"criteria are required: {suite_file} names no judge criteria")
    queue = Queue(
        name=name or suite,
        source="suite",
        suite=suite,
        run=chosen.run_id,
        rubric=Rubric(criteria=text, scale_min=scale[0], scale_max=scale[1]),
    )
    items = items_from_run(chosen.rows())
    create_queue(root, queue, items)
    return queue, len(items)


def queue_from_traces(
    reader: TraceReader,
    root: Path,
    name: str,
    *,
    criteria: str,
    filters: Filters | None = None,
    limit: int = 50,
    scale: tuple[int, int] = (1, 5),
) -> tuple[Queue, int]:
    """Write a queue of the newest traces matching ``filters``; returns it and its item count.

    Raises:
        InputError: no criteria, or no trace matches.
    """
    if not criteria.strip():
        raise InputError("criteria are required for a queue built from traces")
    rows = trace_review_items(reader, filters or Filters(range="all"), limit=limit)
    queue = Queue(
        name=name,
        source="traces",
        rubric=Rubric(criteria=criteria.strip(), scale_min=scale[0], scale_max=scale[1]),
    )
    items = [ReviewItem.model_validate(r) for r in rows]
    create_queue(root, queue, items)
    return queue, len(items)

"""The eval harness: suites (dataset × target × scorers), a resumable runner, statistics that say
how sure a number is, a CI gate with pass/fail/inconclusive verdicts, and reports.

Start with ``aiapp eval`` or::

    from aiapp import evals
    prepared = evals.prepare("evals/ollama_faq.yaml", gateway)
    result = evals.run(prepared)
    verdict = evals.gate_run(prepared, result)
"""

from aiapp.evals._api import Prepared, compare_runs, dry_run, gate_run, prepare, run, with_override
from aiapp.evals._dataset import DatasetSpec, FieldMap, load_cases
from aiapp.evals._gate import EXIT_CODES, GateResult, MetricVerdict, gate, load_baseline, write_baseline
from aiapp.evals._report import (
    compare_markdown,
    html_report,
    junit_xml,
    markdown,
    summary_dict,
    write_reports,
)
from aiapp.evals._runner import DryRun, Runner, RunResult
from aiapp.evals._score import Case, Output, Sample, Score
from aiapp.evals._stats import Estimate, PairedDifference, bootstrap_mean, estimate, paired_difference
from aiapp.evals._suite import GateSpec, MetricGate, Suite, TargetSpec, discover_suites, load_suite
from aiapp.evals._targets import CallableTarget, Target, build_target
from aiapp.evals.scorers import Scorer, build_scorer, scorer, scorer_names

__all__ = [
    "EXIT_CODES",
    "CallableTarget",
    "Case",
    "DatasetSpec",
    "DryRun",
    "Estimate",
    "FieldMap",
    "GateResult",
    "GateSpec",
    "MetricGate",
    "MetricVerdict",
    "Output",
    "PairedDifference",
    "Prepared",
    "RunResult",
    "Runner",
    "Sample",
    "Score",
    "Scorer",
    "Suite",
    "Target",
    "TargetSpec",
    "bootstrap_mean",
    "build_scorer",
    "build_target",
    "compare_markdown",
    "compare_runs",
    "discover_suites",
    "dry_run",
    "estimate",
    "gate",
    "gate_run",
    "html_report",
    "junit_xml",
    "load_baseline",
    "load_cases",
    "load_suite",
    "markdown",
    "paired_difference",
    "prepare",
    "run",
    "scorer",
    "scorer_names",
    "summary_dict",
    "with_override",
    "write_baseline",
    "write_reports",
]

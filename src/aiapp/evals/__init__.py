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
from aiapp.evals._from_traces import ExportReport, export_traces
from aiapp.evals._gate import EXIT_CODES, GateResult, MetricVerdict, gate, load_baseline, write_baseline
from aiapp.evals._interactions import TraceFilter
from aiapp.evals._online import OnlineReport, score_traces
from aiapp.evals._optimize import OptimizeResult, optimize
from aiapp.evals._perturb import MetricRobustness
from aiapp.evals._report import (
    compare_markdown,
    html_report,
    junit_xml,
    markdown,
    summary_dict,
    write_reports,
)
from aiapp.evals._rollout_report import (
    ArmPair,
    MetricComparison,
    PairComparison,
    RolloutReport,
    arollout_report,
    collect_pairs,
    rollout_report,
    write_pairs_dataset,
)
from aiapp.evals._runner import DryRun, Runner, RunResult
from aiapp.evals._score import Case, Output, Sample, Score
from aiapp.evals._stats import Estimate, PairedDifference, bootstrap_mean, estimate, paired_difference
from aiapp.evals._suite import (
    GateSpec,
    MetricGate,
    PerturbSpec,
    Suite,
    TargetSpec,
    discover_suites,
    load_suite,
)
from aiapp.evals._synth import (
    SynthResult,
    apply_review,
    corpus_chunks,
    synthesize,
    write_synth,
)
from aiapp.evals._synth_template import HeadingQuestionWriter
from aiapp.evals._targets import CallableTarget, Target, build_target
from aiapp.evals.scorers import Scorer, build_scorer, scorer, scorer_names

__all__ = [
    "EXIT_CODES",
    "ArmPair",
    "CallableTarget",
    "Case",
    "DatasetSpec",
    "DryRun",
    "Estimate",
    "ExportReport",
    "FieldMap",
    "GateResult",
    "GateSpec",
    "HeadingQuestionWriter",
    "MetricComparison",
    "MetricGate",
    "MetricRobustness",
    "MetricVerdict",
    "OnlineReport",
    "OptimizeResult",
    "Output",
    "PairComparison",
    "PairedDifference",
    "PerturbSpec",
    "Prepared",
    "RolloutReport",
    "RunResult",
    "Runner",
    "Sample",
    "Score",
    "Scorer",
    "Suite",
    "SynthResult",
    "Target",
    "TargetSpec",
    "TraceFilter",
    "apply_review",
    "arollout_report",
    "bootstrap_mean",
    "build_scorer",
    "build_target",
    "collect_pairs",
    "compare_markdown",
    "compare_runs",
    "corpus_chunks",
    "discover_suites",
    "dry_run",
    "estimate",
    "export_traces",
    "gate",
    "gate_run",
    "html_report",
    "junit_xml",
    "load_baseline",
    "load_cases",
    "load_suite",
    "markdown",
    "optimize",
    "paired_difference",
    "prepare",
    "rollout_report",
    "run",
    "score_traces",
    "scorer",
    "scorer_names",
    "summary_dict",
    "synthesize",
    "with_override",
    "write_baseline",
    "write_pairs_dataset",
    "write_reports",
    "write_synth",
]

"""Reports of a run: JSON, Markdown (pull-request comments, ``$GITHUB_STEP_SUMMARY``), JUnit XML
and a self-contained HTML page with per-case rows (worst first) and score histograms.

Plots are inline SVG written here by hand: a histogram is a dozen rectangles, not worth a
plotting library in the install.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from aiapp.evals._gate import GateResult
from aiapp.evals._runner import RunResult
from aiapp.evals._stats import PairedDifference

MAX_HTML_ROWS = 500


def _fmt(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _interval(low: float | None, high: float | None) -> str:
    return "—" if low is None or high is None else f"[{low:.3f}, {high:.3f}]"


ROBUSTNESS_COLUMNS = (
    "perturbation",
    "metric",
    "original",
    "perturbed",
    "drop",
    "drop 95% CI",
    "robustness",
    "95% CI",
    "n",
)


def robustness_dict(result: RunResult) -> dict[str, Any]:
    """Per perturbation: each metric's drop and robustness score, and what could not be perturbed."""
    return {
        kind: {
            "metrics": {m: r.as_dict() for m, r in result.robustness.get(kind, {}).items()},
            "skipped": result.perturb_skipped.get(kind, {}),
        }
        for kind in sorted(set(result.robustness) | set(result.perturb_skipped))
    }


def robustness_rows(result: RunResult) -> list[tuple[str, ...]]:
    """One row of :data:`ROBUSTNESS_COLUMNS` per perturbation and metric (CLI, Markdown, HTML).

    A metric only perturbed forms have (``injection_resisted``) has no drop; its robustness
    columns show its perturbed estimate.
    """
    rows: list[tuple[str, ...]] = []
    for kind, metrics in sorted(result.robustness.items()):
        for name, r in sorted(metrics.items()):
            rob = r.robustness if r.drop is not None else r.perturbed
            rows.append(
                (
                    kind,
                    name,
                    _fmt(r.original),
                    _fmt(r.perturbed.mean),
                    "—" if r.drop is None else _fmt(r.drop.mean),
                    "—" if r.drop is None else _interval(r.drop.low, r.drop.high),
                    "—" if rob is None else _fmt(rob.mean),
                    "—" if rob is None else _interval(rob.low, rob.high),
                    str(r.perturbed.n),
                )
            )
    return rows


def _robustness_skipped(result: RunResult) -> list[str]:
    return [
        f"{kind}: {count} × {reason}"
        for kind, reasons in sorted(result.perturb_skipped.items())
        for reason, count in sorted(reasons.items(), key=lambda kv: -kv[1])
    ]


def summary_dict(result: RunResult, gate_result: GateResult | None = None) -> dict[str, Any]:
    """The JSON summary of a run."""
    return {
        "suite": result.suite,
        "target": result.target,
        "fingerprint": result.fingerprint,
        "cases": result.cases,
        "samples": result.samples,
        "resumed": result.resumed,
        "errors": result.errors,
        "cost_usd": result.cost_usd,
        "wall_s": round(result.wall_s, 3),
        "results": str(result.results_path),
        "metrics": {
            name: {
                **est.as_dict(),
                "unscored_reasons": dict(result.metrics[name].reasons) if name in result.metrics else {},
            }
            for name, est in sorted(result.estimates.items())
        },
        "gate": None
        if gate_result is None
        else {
            "verdict": gate_result.verdict,
            "exit_code": gate_result.exit_code,
            "baseline": str(gate_result.baseline_path) if gate_result.baseline_path else None,
            "baseline_found": gate_result.baseline_found,
            "metrics": [m.as_dict() for m in gate_result.metrics],
        },
    }


def markdown(result: RunResult, gate_result: GateResult | None = None) -> str:
    """A Markdown summary fit for a pull-request comment."""
    icon = {"pass": "✅", "fail": "❌", "inconclusive": "⚠️"}
    lines = [
        f"### Eval `{result.suite}`"
        + (f" — {icon[gate_result.verdict]} **{gate_result.verdict}**" if gate_result else "")
    ]
    lines.append("")
    lines.append(
        f"Target: `{result.target}` · cases: {result.cases} · samples: {result.samples} · errors: {result.errors}"
    )
    cost = "unknown" if result.cost_usd is None else f"${result.cost_usd:.4f}"
    lines.append(f"Cost: {cost} · fingerprint `{result.fingerprint}`")
    lines.append("")
    lines.append("| metric | mean | 95% CI | n | unscored | pass rate |")
    lines.append("|---|---|---|---|---|---|")
    for name, est in sorted(result.estimates.items()):
        rate = "—" if est.pass_rate is None else f"{est.pass_rate:.0%}"
        lines.append(
            f"| {name} | {_fmt(est.mean)} | {_interval(est.low, est.high)} | {est.n} | {est.unscored} | {rate} |"
        )
    unscored = {n: dict(m.reasons) for n, m in result.metrics.items() if m.reasons}
    if unscored:
        lines.append("")
        lines.append("Unscored:")
        for name, reasons in sorted(unscored.items()):
            for reason, count in sorted(reasons.items(), key=lambda kv: -kv[1])[:3]:
                lines.append(f"- `{name}`: {count} × {reason}")
    rows = robustness_rows(result)
    if rows or result.perturb_skipped:
        lines.append("")
        lines.append("Robustness (original vs perturbed, paired per case):")
        lines.append("")
        lines.append("| " + " | ".join(ROBUSTNESS_COLUMNS) + " |")
        lines.append("|" + "---|" * len(ROBUSTNESS_COLUMNS))
        lines.extend("| " + " | ".join(row) + " |" for row in rows)
        lines.extend(f"- not perturbed: {line}" for line in _robustness_skipped(result))
    if gate_result is not None:
        lines.append("")
        lines.append("| gated metric | verdict | now | baseline | change (95% CI) | why |")
        lines.append("|---|---|---|---|---|---|")
        for m in gate_result.metrics:
            change = (
                "—"
                if m.difference is None
                else f"{m.difference.mean:+.3f} [{m.difference.low:+.3f}, {m.difference.high:+.3f}]"
            )
            verdict = f"{icon[m.verdict]} {m.verdict}" + (" (advisory)" if m.advisory else "")
            lines.append(
                f"| {m.metric} | {verdict} | {_fmt(m.mean)} | {_fmt(m.baseline_mean)} | {change} | {m.reason} |"
            )
        if not gate_result.baseline_found:
            lines.append("")
            lines.append(
                f"No baseline at `{gate_result.baseline_path}`: create one with `aiapp eval --update-baseline`."
            )
    return "\n".join(lines) + "\n"


def compare_markdown(suite: str, ref_a: str, ref_b: str, diffs: dict[str, PairedDifference | None]) -> str:
    """A Markdown table of paired differences (B − A) with win/loss/tie counts."""
    lines = [
        f"### Compare `{suite}`: `{ref_b}` vs `{ref_a}`",
        "",
        "| metric | B − A | 95% CI | n | B wins | A wins | ties |",
        "|---|---|---|---|---|---|---|",
    ]
    for metric, d in sorted(diffs.items()):
        if d is None:
            lines.append(f"| {metric} | — | — | 0 | — | — | — |")
        else:
            lines.append(
                f"| {metric} | {d.mean:+.3f} | [{d.low:+.3f}, {d.high:+.3f}] | {d.n} | {d.wins} | {d.losses} | {d.ties} |"
            )
    return "\n".join(lines) + "\n"


def write_step_summary(text: str) -> None:
    """Append to ``$GITHUB_STEP_SUMMARY`` when running in GitHub Actions."""
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(text + "\n")


def junit_xml(result: RunResult, gate_result: GateResult | None = None) -> str:
    """JUnit XML: one test case per (case, metric); failures where the scorer's bar was missed."""
    suite_el = ET.Element("testsuite", name=f"aiapp.eval.{result.suite}")
    tests = failures = skipped = 0
    for row in result.iter_rows():
        for score in row.get("scores", []):
            tests += 1
            case_el = ET.SubElement(
                suite_el,
                "testcase",
                classname=f"{result.suite}.{score['scorer']}",
                name=f"{row['case_id']}#{row['repeat']}",
            )
            if score.get("value") is None:
                skipped += 1
                ET.SubElement(case_el, "skipped", message=score.get("reason") or "unscored")
            elif score.get("passed") is False:
                failures += 1
                failure = ET.SubElement(
                    case_el,
                    "failure",
                    message=f"{score['scorer']}={score['value']:.3f}: {score.get('reason', '')}",
                )
                failure.text = str(row.get("output", {}).get("text", ""))[:2000]
    if gate_result is not None:
        for m in gate_result.metrics:
            tests += 1
            case_el = ET.SubElement(suite_el, "testcase", classname=f"{result.suite}.gate", name=m.metric)
            if m.verdict == "fail" and not m.advisory:
                failures += 1
                ET.SubElement(case_el, "failure", message=m.reason)
            elif m.verdict == "inconclusive":
                skipped += 1
                ET.SubElement(case_el, "skipped", message=m.reason)
    suite_el.set("tests", str(tests))
    suite_el.set("failures", str(failures))
    suite_el.set("skipped", str(skipped))
    return ET.tostring(suite_el, encoding="unicode", xml_declaration=True)


def _histogram_svg(values: list[float], *, bins: int = 10, width: int = 220, height: int = 60) -> str:
    if not values:
        return "<svg width='220' height='60'></svg>"
    lo, hi = min([*values, 0.0]), max([*values, 1.0])
    span = (hi - lo) or 1.0
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, int((v - lo) / span * bins))] += 1
    top = max(counts) or 1
    bar_w = width / bins
    rects = "".join(
        f"<rect x='{i * bar_w:.1f}' y='{height - c / top * (height - 12):.1f}' width='{bar_w - 2:.1f}' "
        f"height='{c / top * (height - 12):.1f}' fill='#4c78a8'><title>{c}</title></rect>"
        for i, c in enumerate(counts)
    )
    labels = f"<text x='0' y='{height}' font-size='9'>{lo:g}</text><text x='{width - 14}' y='{height}' font-size='9'>{hi:g}</text>"
    return (
        f"<svg width='{width}' height='{height + 2}' xmlns='http://www.w3.org/2000/svg'>{rects}{labels}</svg>"
    )


def html_report(result: RunResult, gate_result: GateResult | None = None) -> str:
    """A self-contained HTML report: summary, histograms, and per-case rows worst first."""
    esc = html.escape
    rows = []
    for row in result.iter_rows():
        values = [s["value"] for s in row.get("scores", []) if s.get("value") is not None]
        rows.append((sum(values) / len(values) if values else -1.0, row))
    rows.sort(key=lambda item: item[0])
    metrics = sorted(result.estimates)
    hist = {m: list(result.case_values(m).values()) for m in metrics}
    head = "".join(f"<th>{esc(m)}</th>" for m in metrics)
    body = []
    for _, row in rows[:MAX_HTML_ROWS]:
        scores = {s["scorer"]: s for s in row.get("scores", [])}
        cells = []
        for m in metrics:
            s = scores.get(m)
            if s is None or s.get("value") is None:
                reason = "" if s is None else s.get("reason", "")
                cells.append(f"<td class='unscored' title='{esc(reason)}'>unscored</td>")
            else:
                cls = "fail" if s.get("passed") is False else "ok"
                cells.append(f"<td class='{cls}' title='{esc(s.get('reason', ''))}'>{s['value']:.2f}</td>")
        output = row.get("output", {})
        question = row["input"] if isinstance(row["input"], str) else json.dumps(row["input"])
        sources = ", ".join(h.get("source", "") for h in output.get("hits", [])[:5])
        answer = output.get("error") or output.get("text", "")
        body.append(
            f"<tr><td>{esc(str(row['case_id']))}</td><td>{esc(question[:300])}</td>"
            f"<td>{esc(str(answer)[:600])}</td><td>{esc(str(row.get('expected') or '')[:300])}</td>"
            f"<td class='src'>{esc(sources)}</td>{''.join(cells)}"
            f"<td>{esc(output.get('trace_id') or '')}</td></tr>"
        )
    summary = "".join(
        f"<div class='metric'><b>{esc(m)}</b><br>{_fmt(result.estimates[m].mean)} "
        f"{_interval(result.estimates[m].low, result.estimates[m].high)} n={result.estimates[m].n}"
        f"{' unscored=' + str(result.estimates[m].unscored) if result.estimates[m].unscored else ''}<br>{_histogram_svg(hist[m])}</div>"
        for m in metrics
    )
    verdict = (
        ""
        if gate_result is None
        else f"<p class='verdict {gate_result.verdict}'>gate: {gate_result.verdict}</p>"
    )
    gate_rows = (
        ""
        if gate_result is None
        else "<table><tr><th>gated metric</th><th>verdict</th><th>why</th></tr>"
        + "".join(
            f"<tr><td>{esc(m.metric)}</td><td>{m.verdict}</td><td>{esc(m.reason)}</td></tr>"
            for m in gate_result.metrics
        )
        + "</table>"
    )
    robust_rows = robustness_rows(result)
    robustness = (
        ""
        if not robust_rows and not result.perturb_skipped
        else "<h2>Robustness</h2><p>original vs perturbed, paired per case</p><table><tr>"
        + "".join(f"<th>{esc(c)}</th>" for c in ROBUSTNESS_COLUMNS)
        + "</tr>"
        + "".join("<tr>" + "".join(f"<td>{esc(v)}</td>" for v in row) + "</tr>" for row in robust_rows)
        + "</table>"
        + "".join(f"<p>not perturbed: {esc(line)}</p>" for line in _robustness_skipped(result))
    )
    more = (
        f"<p>showing the worst {MAX_HTML_ROWS} of {len(rows)} rows</p>" if len(rows) > MAX_HTML_ROWS else ""
    )
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>aiapp eval {esc(result.suite)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em}}table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ddd;padding:4px;vertical-align:top}}.fail{{background:#fde2e1}}.ok{{background:#e6f4ea}}
.unscored{{background:#eee;color:#777}}.metric{{display:inline-block;margin:0 2em 1em 0}}.src{{font-size:11px;color:#555}}
.verdict.pass{{color:green}}.verdict.fail{{color:#b00}}.verdict.inconclusive{{color:#b80}}</style></head><body>
<h1>Eval {esc(result.suite)}</h1><p>target: <code>{esc(result.target)}</code> · cases {result.cases} · samples {result.samples} · errors {result.errors}</p>
{verdict}{gate_rows}<h2>Metrics</h2>{summary}{robustness}<h2>Cases, worst first</h2>{more}
<table><tr><th>case</th><th>input</th><th>output</th><th>expected</th><th>sources</th>{head}<th>trace</th></tr>{"".join(body)}</table>
</body></html>"""


def write_reports(result: RunResult, gate_result: GateResult | None, out_dir: Path) -> dict[str, Path]:
    """Write JSON, Markdown, JUnit and HTML reports into ``out_dir``; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out_dir / f"{result.suite}.json",
        "markdown": out_dir / f"{result.suite}.md",
        "junit": out_dir / f"{result.suite}.junit.xml",
        "html": out_dir / f"{result.suite}.html",
    }
    paths["json"].write_text(
        json.dumps(summary_dict(result, gate_result), indent=2, default=str) + "\n", encoding="utf-8"
    )
    paths["markdown"].write_text(markdown(result, gate_result), encoding="utf-8")
    paths["junit"].write_text(junit_xml(result, gate_result), encoding="utf-8")
    paths["html"].write_text(html_report(result, gate_result), encoding="utf-8")
    return paths

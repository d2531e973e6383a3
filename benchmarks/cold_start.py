"""Cold start: how long a fresh ``aiapp`` process takes, and how much memory, on a built index.

Run: ``.venv/bin/python benchmarks/cold_start.py [--runs 5] [--reference-runs 2]``

Builds the demo index (``corpora/ollama``) in a private ``AIAPP_HOME`` once (not timed), then runs
``aiapp --help``, ``aiapp search``, ``aiapp ask`` and ``aiapp complete`` as fresh processes,
``--runs`` times each in interleaved order, and prints one JSON object per command: median, min and
max wall time and the median peak RSS of the process (``wait4``'s ``ru_maxrss``). Goals (issue 14):
``ask`` ≤ 2.0 s and ≤ 300 MB, ``search`` ≤ 1.5 s.

The reference, measured in the same run: ``ask`` and ``search`` with the local MiniLM on the
``torch`` runtime (sentence-transformers), the default before the ONNX embedder. The machine's load
average is printed with every row: on shared CPUs, read medians, and compare within one run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit

REPO = Path(__file__).resolve().parents[1]
QUESTION = "How do I make the server listen on all interfaces?"
COMMANDS: dict[str, list[str]] = {
    "help": ["--help"],
    "search": ["search", "how do I change the port the server listens on", "--k", "3"],
    "ask": ["ask", QUESTION],
    "complete": [
        "complete",
        f"<context>Set OLLAMA_HOST=0.0.0.0 to listen on all interfaces.</context> {QUESTION}",
    ],
}
GOALS: dict[str, dict[str, float]] = {"ask": {"wall_s": 2.0, "rss_mb": 300.0}, "search": {"wall_s": 1.5}}


def aiapp_bin() -> str:
    """The ``aiapp`` script beside this interpreter (the venv's)."""
    candidate = Path(sys.executable).with_name("aiapp")
    return str(candidate) if candidate.exists() else "aiapp"


def timed(args: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MB) and output of one fresh process."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [aiapp_bin(), *args], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    assert proc.stdout is not None
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    text = output.decode("utf-8", "replace")
    if proc.returncode != 0:
        raise SystemExit(f"aiapp {' '.join(args)} failed ({proc.returncode}):\n{text}")
    return wall, usage.ru_maxrss / 1024.0, text


def row(name: str, runtime: str, walls: list[float], rss: list[float], output: str) -> dict[str, Any]:
    """One command's result."""
    out: dict[str, Any] = {
        "benchmark": "cold_start",
        "command": name,
        "runtime": runtime,
        "runs": len(walls),
        "median_wall_s": round(statistics.median(walls), 3),
        "min_wall_s": round(min(walls), 3),
        "max_wall_s": round(max(walls), 3),
        "median_peak_rss_mb": round(statistics.median(rss), 1),
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }
    goal = GOALS.get(name)
    if goal and runtime == "onnx":
        out["goal"] = goal
        out["meets_goal"] = out["median_wall_s"] <= goal["wall_s"] and (
            "rss_mb" not in goal or out["median_peak_rss_mb"] <= goal["rss_mb"]
        )
    if name == "ask":
        out["names_OLLAMA_HOST"] = "OLLAMA_HOST" in output
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="fresh processes per command")
    parser.add_argument("--reference-runs", type=int, default=2, help="runs of the torch reference (0: none)")
    parser.add_argument("--home", type=Path, default=None, help="AIAPP_HOME (default: a temporary folder)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="aiapp-cold-") as tmp:
        home = args.home or Path(tmp) / "home"
        env = {
            **os.environ,
            "AIAPP_HOME": str(home),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "COLUMNS": "120",
        }
        env.pop("AIAPP_CONFIG", None)
        start = time.perf_counter()
        timed(["index", "ollama"], env)  # builds the ONNX graph too, as a first `aiapp index` does
        emit({"step": "index", "seconds": round(time.perf_counter() - start, 2), "home": str(home)})

        walls: dict[str, list[float]] = {name: [] for name in COMMANDS}
        rss: dict[str, list[float]] = {name: [] for name in COMMANDS}
        outputs: dict[str, str] = {}
        for i in range(args.runs):
            order = list(COMMANDS) if i % 2 == 0 else list(reversed(COMMANDS))
            for name in order:
                wall, peak, text = timed(COMMANDS[name], env)
                walls[name].append(wall)
                rss[name].append(peak)
                outputs[name] = text
        for name in COMMANDS:
            emit(row(name, "onnx", walls[name], rss[name], outputs[name]))

        if args.reference_runs > 0:
            config = yaml.safe_load((REPO / "configs" / "aiapp.yaml").read_text()) or {}
            config.setdefault("retrieval", {})["embedder_runtime"] = "torch"
            config_path = Path(tmp) / "aiapp-torch.yaml"
            config_path.write_text(yaml.safe_dump(config))
            torch_env = {**env, "AIAPP_CONFIG": str(config_path)}
            for name in ("search", "ask"):
                runs = [timed(COMMANDS[name], torch_env) for _ in range(args.reference_runs)]
                emit(row(name, "torch", [r[0] for r in runs], [r[1] for r in runs], runs[-1][2]))


if __name__ == "__main__":
    main()

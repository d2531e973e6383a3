"""What a rollout adds to the primary call: a sticky split and a shadow, against the same gateway without.

Sequential chat calls against the local stub server (a child process, so it does not share the
client's GIL), clients interleaved in blocks so machine noise hits them alike, all in one run:

- ``plain`` — ``Gateway.complete`` on a one-deployment route (the reference);
- ``route_split`` — the same two-deployment sticky split without a shadow (to separate the two costs);
- ``route_split_shadow`` — a route with two deployments, ``strategy: weighted`` 90/10, sticky by the
  ``user`` in the call's metadata, and ``shadow: {route: cand, sample: 0.2, max_in_flight: 4}``;
- ``prompt_plain`` — a prompt rendered and sent through ``Gateway.complete`` (no rollout);
- ``prompt_split`` — ``Rollout.complete`` on a label that only splits (no shadow);
- ``prompt_split_shadow`` — ``Rollout.complete`` on a label that splits the prompt 90/10 by user
  and shadows 20% of calls with another version on route ``cand`` (its ``app`` span included).

Shadows really run (on the gateway's loop, after each primary returns), so their cost to the next
primaries is in the numbers. The summary line has ``route_added_ms`` (= route_split_shadow −
plain, p50) and ``prompt_added_ms`` (= prompt_split_shadow − prompt_plain, p50); goal ≤ 0.5 ms each.

Usage: python benchmarks/rollout_overhead.py [--calls 1000] [--block 50]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("AIAPP_HOME", tempfile.mkdtemp(prefix="aiapp-bench-"))

from _common import emit, interleaved_times, percentile, summary
from aiapp.config import Deployment, Route, Settings, ShadowSpec
from aiapp.gateway import Gateway, run_sync
from aiapp.prompts import PromptRegistry
from aiapp.rollout import Rollout, ShadowModel
from aiapp.testing import StubServer

PROMPT = """\
name: answer
version: {version}
variables:
  question: {{type: string}}
messages:
  - role: system
    content: "Answer briefly (v{version})."
  - role: user
    content: "{{{{ question }}}}"
"""

LABELS = """\
production:
  answer:
    split: {v1: 90, v2: 10}
    shadow: {prompt: answer@v3, route: cand, sample: 0.2, max_in_flight: 4}
plain:
  - answer@v1
split_only:
  answer: {v1: 90, v2: 10}
"""


def _prompts(root: Path) -> Path:
    for version in (1, 2, 3):
        path = root / "answer" / f"v{version}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(PROMPT.format(version=version))
    (root / "labels.yaml").write_text(LABELS)
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--block", type=int, default=50)
    args = parser.parse_args()

    with StubServer.spawn() as stub:
        base = stub.base_url

        def dep(model: str, weight: float = 1.0) -> Deployment:
            return Deployment(model=f"vllm/{model}", api_base=base, weight=weight)

        prompts = _prompts(Path(tempfile.mkdtemp(prefix="aiapp-bench-prompts-")))
        settings = Settings(
            routes={
                "plain": Route(deployments=[dep("stub-model")]),
                "split": Route(
                    deployments=[dep("stub-model", 90), dep("stub-model-b", 10)],
                    strategy="weighted",
                    shadow=ShadowSpec(route="cand", sample=0.2, max_in_flight=4),
                ),
                "split_only": Route(
                    deployments=[dep("stub-model", 90), dep("stub-model-b", 10)], strategy="weighted"
                ),
                "cand": Route(deployments=[dep("stub-candidate")]),
            },
            prompts={"dir": prompts},
        )
        gw = Gateway(settings)
        registry = PromptRegistry.from_settings(settings)
        rollout = Rollout(gw, registry)
        plain_prompt = registry.get("answer", label="plain")
        question = "What is the capital of France?"
        counter = {"n": 0}

        def user() -> str:
            counter["n"] += 1
            return f"user-{counter['n'] % 1000}"

        clients: dict[str, Callable[[], object]] = {
            "plain": lambda: gw.complete(question, model="plain"),
            "route_split": lambda: gw.complete(question, model="split_only", metadata={"user": user()}),
            "route_split_shadow": lambda: gw.complete(question, model="split", metadata={"user": user()}),
            "prompt_plain": lambda: gw.complete(
                plain_prompt.render({"question": question}),
                model="plain",
                options=plain_prompt.call_options(),
                prompt_ref=plain_prompt.prompt_ref(),
            ),
            "prompt_split": lambda: rollout.complete(
                "answer", {"question": question}, label="split_only", key=user(), model="plain"
            ),
            "prompt_split_shadow": lambda: rollout.complete(
                "answer", {"question": question}, key=user(), model="plain"
            ),
        }
        times = interleaved_times(clients, calls=args.calls, block=args.block)
        run_sync(rollout.drain())
        layer = gw.model("split")
        assert isinstance(layer, ShadowModel)
        run_sync(layer.runner.drain())
        route_shadows = layer.runner.stats()
        prompt_shadows = rollout.shadow_runner(registry.entry("answer", "production"))  # type: ignore[arg-type]
        assert prompt_shadows is not None
        prompt_stats = prompt_shadows.stats()
        stats = stub.stats()
        gw.close()

    for name, values in times.items():
        emit({"client": name, "calls": len(values), **summary(values)})
    p50 = {name: percentile(values, 50) for name, values in times.items()}
    route_added = p50["route_split_shadow"] - p50["plain"]
    prompt_added = p50["prompt_split_shadow"] - p50["prompt_plain"]
    emit(
        {
            "benchmark": "rollout_overhead",
            "calls_per_client": args.calls,
            "stub_requests": stats.get("requests"),
            "plain_p50_ms": round(p50["plain"], 4),
            "route_split_p50_ms": round(p50["route_split"], 4),
            "split_added_ms": round(p50["route_split"] - p50["plain"], 4),
            "route_split_shadow_p50_ms": round(p50["route_split_shadow"], 4),
            "route_added_ms": round(route_added, 4),
            "goal_route_added_le_0_5_ms": route_added <= 0.5,
            "prompt_plain_p50_ms": round(p50["prompt_plain"], 4),
            "prompt_split_p50_ms": round(p50["prompt_split"], 4),
            "prompt_split_added_ms": round(p50["prompt_split"] - p50["prompt_plain"], 4),
            "prompt_split_shadow_p50_ms": round(p50["prompt_split_shadow"], 4),
            "prompt_added_ms": round(prompt_added, 4),
            "goal_prompt_added_le_0_5_ms": prompt_added <= 0.5,
            "route_shadows": route_shadows,
            "prompt_shadows": prompt_stats,
        }
    )


if __name__ == "__main__":
    main()

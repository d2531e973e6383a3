"""`aiapp serve`: OpenAI's `user` request field is the caller key, so a weighted route is sticky per
user (real provider path: the stub server behind a two-deployment route)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from aiapp.config import Deployment, Route, Settings
from aiapp.gateway import Gateway
from aiapp.server import create_app


def test_the_user_field_makes_a_weighted_route_sticky(stub: Any, tmp_path: Path) -> None:
    def dep(model: str, weight: float) -> Deployment:
        return Deployment(model=f"openai/{model}", api_base=stub.base_url, timeout_s=10, weight=weight)

    settings = Settings(
        default_route="split",
        routes={"split": Route(deployments=[dep("a-model", 50), dep("b-model", 50)], strategy="weighted")},
        home=tmp_path / "home",
    )
    gw = Gateway(settings)
    app = create_app(gw, close_gateway=True)
    seen: dict[str, set[str]] = {}
    with TestClient(app) as client:
        for user in ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"):
            for _ in range(3):
                reply = client.post(
                    "/v1/chat/completions",
                    json={"model": "split", "user": user, "messages": [{"role": "user", "content": "hi"}]},
                )
                assert reply.status_code == 200, reply.text
                spans = gw.tracer.store.trace(reply.headers["x-aiapp-trace-id"])  # type: ignore[union-attr]
                llm = next(s for s in spans if s.kind == "llm")
                seen.setdefault(user, set()).add(llm.attributes["route_arm"]["arm"])
    assert all(len(arms) == 1 for arms in seen.values()), seen  # sticky per user
    assert len(Counter(next(iter(a)) for a in seen.values())) == 2  # and both deployments serve someone

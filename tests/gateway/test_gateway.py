"""The gateway: routing with ordered failover, cost, tracing — driven by FakeModel."""

from __future__ import annotations

from pathlib import Path

import pytest

from aiapp.config import Deployment, Route, Settings, load_settings
from aiapp.errors import (
    AllDeploymentsFailedError,
    AuthenticationError,
    ConfigError,
    ModelNotFoundError,
    ProviderServerError,
    RateLimitError,
)
from aiapp.gateway import Gateway, PromptRef, RouteModel, register_provider
from aiapp.testing import FakeModel
from aiapp.types import CallOptions, Message


def gateway(**models: object) -> Gateway:
    return Gateway(load_settings(), models=models)  # type: ignore[arg-type]


def test_default_route_is_the_offline_baseline() -> None:
    gw = Gateway(Settings())
    reply = gw.complete(
        "<context>The sky is blue because of Rayleigh scattering.</context> Why is the sky blue?"
    )
    assert "Rayleigh scattering" in reply.text
    assert reply.route == "local"
    assert reply.deployment == "local/extractive"
    assert reply.usage.cost_usd == 0.0
    assert reply.trace_id


def test_complete_records_a_trace_with_prompt_ref_and_usage(aiapp_home: Path) -> None:
    fake = FakeModel(["Paris."])
    gw = gateway(geo=fake)
    reply = gw.complete(
        [Message.system("Be brief."), Message.user("Capital of France?")],
        model="geo",
        prompt_ref=PromptRef("capitals@v2", "abc123"),
        metadata={"user": "u1"},
        temperature=0,
    )
    assert reply.text == "Paris."
    assert fake.last_call.options.temperature == 0
    [span] = gw.tracer.store.trace(reply.trace_id)  # type: ignore[union-attr]
    assert span.kind == "llm"
    assert span.route == "geo"
    assert span.status == "ok"
    assert span.prompt_ref == "capitals@v2" and span.prompt_hash == "abc123"
    assert span.input_tokens == reply.usage.input_tokens > 0
    assert span.output == "Paris."
    assert span.input[1]["content"] == "Capital of France?"
    assert span.attributes == {"user": "u1", "finish_reason": "stop"}
    assert span.config_hash == gw.settings.config_hash()
    assert (aiapp_home / "traces.db").exists()


def test_failover_moves_past_retryable_errors_and_records_each_try() -> None:
    primary = FakeModel([RateLimitError("slow down", status=429, retry_after=2)], name="p")
    backup = FakeModel(["from backup"], name="b")
    gw = gateway(r=RouteModel("r", [("primary", primary), ("backup", backup)]))
    reply = gw.complete("hi", model="r")
    assert reply.text == "from backup"
    assert reply.deployment == "backup"
    assert reply.attempts == 2
    assert reply.tried == ("primary", "backup")
    [span] = gw.tracer.store.trace(reply.trace_id)  # type: ignore[union-attr]
    assert span.deployments == ["primary", "backup"] and span.attempts == 2


def test_a_misconfigured_deployment_fails_over_and_opens_its_breaker() -> None:
    primary = FakeModel([AuthenticationError("bad key", status=401)], name="p")
    backup = FakeModel(["from backup", "again from backup"], name="b")
    gw = gateway(r=RouteModel("r", [("primary", primary), ("backup", backup)]))
    assert gw.complete("hi", model="r").text == "from backup"
    assert gw.complete("hi", model="r").text == "again from backup"
    assert primary.call_count == 1  # its breaker opened: the second call did not try it
    assert gw.model("r").health.get("primary").state == "open"  # type: ignore[attr-defined]


def test_a_model_a_deployment_does_not_serve_fails_over_too() -> None:
    primary = FakeModel([ModelNotFoundError("no such model", status=404)], name="p")
    gw = gateway(r=RouteModel("r", [("primary", primary), ("backup", FakeModel(["ok"], name="b"))]))
    reply = gw.complete("hi", model="r")
    assert reply.text == "ok" and reply.tried == ("primary", "backup")


def test_a_bad_key_on_the_only_deployment_names_it() -> None:
    gw = gateway(r=RouteModel("r", [("primary", FakeModel([AuthenticationError("bad key", status=401)]))]))
    with pytest.raises(AuthenticationError) as info:
        gw.complete("hi", model="r")
    assert info.value.route == "r" and info.value.deployment == "primary"
    assert "route 'r', deployment 'primary', HTTP 401: bad key" in str(info.value)


def test_all_deployments_failed_lists_every_failure_and_is_traced() -> None:
    a = FakeModel([ProviderServerError("boom", status=500)])
    b = FakeModel([TimeoutError("slow")])
    gw = gateway(r=RouteModel("r", [("a", a), ("b", b)]))
    with pytest.raises(AllDeploymentsFailedError) as info:
        gw.complete("hi", model="r")
    err = info.value
    assert [f.deployment for f in err.failures] == ["a", "b"]
    assert type(err.failures[1].error).__name__ == "ProviderTimeoutError"
    assert err.retryable
    [span] = gw.tracer.store.recent(1)  # type: ignore[union-attr]
    assert span.status == "error" and span.deployments == ["a", "b"]
    assert "AllDeploymentsFailedError" in (span.error or "")


def test_stream_fails_over_before_the_first_chunk() -> None:
    primary = FakeModel([ProviderServerError("down", status=503)])
    backup = FakeModel(["streamed from backup"])
    gw = gateway(r=RouteModel("r", [("primary", primary), ("backup", backup)]))
    chunks = list(gw.stream("hi", model="r"))
    assert "".join(c.delta for c in chunks) == "streamed from backup"
    assert chunks[-1].usage is not None
    [span] = gw.tracer.store.recent(1)  # type: ignore[union-attr]
    assert span.deployments == ["primary", "backup"]
    assert span.output == "streamed from backup"


async def test_async_complete_and_stream() -> None:
    fake = FakeModel(["one", "two three"])
    gw = gateway(r=RouteModel("r", [("only", fake)]))
    reply = await gw.acomplete("hi", model="r")
    assert reply.text == "one"
    text = "".join([c.delta async for c in gw.astream("hi", model="r")])
    assert text == "two three"


def test_unknown_route_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown route 'nope' \(known: .*local.*\)"):
        gateway().complete("hi", model="nope")


def test_tracing_can_be_turned_off(aiapp_home: Path) -> None:
    settings = Settings.model_validate({"tracing": {"enabled": False}})
    settings.home = aiapp_home
    reply = Gateway(settings).complete("hello")
    assert reply.trace_id  # ids are still minted so callers can correlate
    assert not (aiapp_home / "traces.db").exists()


def test_store_content_off_keeps_metadata_only() -> None:
    settings = Settings.model_validate({"tracing": {"store_content": False}})
    gw = Gateway(settings, models={"r": FakeModel(["secret reply"])})
    reply = gw.complete("secret prompt", model="r")
    [span] = gw.tracer.store.trace(reply.trace_id)  # type: ignore[union-attr]
    assert span.input is None and span.output is None
    assert span.output_tokens == 2


def test_feedback_is_stored_with_the_trace() -> None:
    gw = gateway(r=FakeModel(["ok"]))
    reply = gw.complete("hi", model="r")
    gw.feedback(reply.trace_id, 1, "helpful")  # type: ignore[arg-type]
    assert gw.tracer.store.feedback(reply.trace_id)[0]["comment"] == "helpful"  # type: ignore[union-attr,arg-type]


def test_registered_provider_serves_configured_deployments() -> None:
    made: list[str] = []

    @register_provider("test-gateway-scripted")
    def make(deployment: Deployment, prices: object) -> FakeModel:
        made.append(deployment.model)
        return FakeModel(default="scripted reply", name=deployment.model)

    settings = Settings(
        routes={"s": Route(deployments=[Deployment(model="scripted/x", provider="test-gateway-scripted")])}
    )
    reply = Gateway(settings).complete("hi", model="s")
    assert reply.text == "scripted reply" and made == ["scripted/x"]


def test_unknown_provider_is_a_config_error() -> None:
    settings = Settings(routes={"s": Route(deployments=[Deployment(model="x/y", provider="nope")])})
    with pytest.raises(ConfigError, match="unknown provider 'nope'"):
        Gateway(settings).complete("hi", model="s")


def test_check_pings_each_deployment() -> None:
    gw = gateway(ok=FakeModel(default="pong"), bad=FakeModel(default=ProviderServerError("down", status=500)))
    results = {r.route: r for r in gw.check(["ok", "bad"])}
    assert results["ok"].ok and not results["bad"].ok
    assert "ProviderServerError" in results["bad"].detail


def test_call_options_merge() -> None:
    base = CallOptions(temperature=0.2, max_tokens=10, extra={"a": 1})
    merged = base.merged(CallOptions(max_tokens=20, extra={"b": 2}))
    assert (merged.temperature, merged.max_tokens, merged.extra) == (0.2, 20, {"a": 1, "b": 2})

"""`aiapp prompts push --to langfuse` / `pull --from langfuse` against a loopback stand-in for
Langfuse's prompt API (``/api/public/v2/prompts``), driven through the real Langfuse SDK client."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import pytest
from typer.testing import CliRunner

from aiapp.cli import app
from aiapp.prompts import PromptRegistry, promote

REPO = Path(__file__).resolve().parents[2]
PUBLIC, SECRET = "pk-lf-prompts", "sk-lf-prompts"
runner = CliRunner()


class LangfusePromptServer:
    """Langfuse's prompt endpoints, in memory: versions numbered by the server, labels unique per prompt."""

    def __init__(self) -> None:
        self.prompts: dict[str, list[dict[str, Any]]] = {}
        self.auth: set[str] = set()
        self.writes: list[tuple[str, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> Any:
                return json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")

            def do_GET(self) -> None:
                server.auth.add(self.headers.get("Authorization", ""))
                url = urlparse(self.path)
                query = parse_qs(url.query)
                parts = url.path.split("/")
                if url.path == "/api/public/v2/prompts":
                    data = [
                        {
                            "name": name,
                            "type": "chat",
                            "versions": [v["version"] for v in versions],
                            "labels": sorted({label for v in versions for label in v["labels"]}),
                            "tags": [],
                            "lastUpdatedAt": datetime.now(UTC).isoformat(),
                            "lastConfig": versions[-1]["config"],
                        }
                        for name, versions in sorted(server.prompts.items())
                    ]
                    meta = {"page": 1, "limit": 100, "totalItems": len(data), "totalPages": 1}
                    return self._reply(200, {"data": data, "meta": meta})
                name = unquote(parts[-1])
                version = int(query["version"][0]) if "version" in query else None
                found = [
                    v for v in server.prompts.get(name, []) if version is None or v["version"] == version
                ]
                if not found:
                    return self._reply(404, {"message": "Prompt not found"})
                return self._reply(200, found[-1])

            def do_POST(self) -> None:
                server.auth.add(self.headers.get("Authorization", ""))
                body = self._body()
                versions = server.prompts.setdefault(body["name"], [])
                entry = {
                    "type": "chat",
                    "name": body["name"],
                    "version": len(versions) + 1,
                    "prompt": body["prompt"],
                    "config": body.get("config") or {},
                    "labels": [],
                    "tags": [],
                    "commitMessage": body.get("commitMessage"),
                }
                versions.append(entry)
                server._label(body["name"], entry["version"], [*body.get("labels", []), "latest"])
                server.writes.append(("create", f"{body['name']}@v{entry['version']}"))
                return self._reply(201, entry)

            def do_PATCH(self) -> None:
                server.auth.add(self.headers.get("Authorization", ""))
                parts = urlparse(self.path).path.split("/")
                name, version = unquote(parts[-3]), int(parts[-1])
                labels = self._body()["newLabels"]
                keep = ["latest"] if "latest" in server._version(name, version)["labels"] else []
                server._label(name, version, [*labels, *keep], replace=True)
                server.writes.append(("labels", f"{name}@v{version}={sorted(labels)}"))
                return self._reply(200, server._version(name, version))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _version(self, name: str, version: int) -> dict[str, Any]:
        return next(v for v in self.prompts[name] if v["version"] == version)

    def _label(self, name: str, version: int, labels: list[str], *, replace: bool = False) -> None:
        for other in self.prompts[name]:
            other["labels"] = [label for label in other["labels"] if label not in labels]
        target = self._version(name, version)
        target["labels"] = sorted(set(labels) | (set() if replace else set(target["labels"])))

    def add_from_ui(self, name: str, messages: list[dict[str, str]], labels: list[str]) -> int:
        """A version made in Langfuse's UI: no aiapp config."""
        versions = self.prompts.setdefault(name, [])
        entry = {"type": "chat", "name": name, "version": len(versions) + 1, "prompt": messages,
                 "config": {}, "labels": [], "tags": [], "commitMessage": None}  # fmt: skip
        versions.append(entry)
        self._label(name, entry["version"], [*labels, "latest"])
        return int(entry["version"])

    def labels(self, name: str) -> dict[str, int]:
        return {label: v["version"] for v in self.prompts.get(name, []) for label in v["labels"]}


@pytest.fixture
def langfuse(monkeypatch: pytest.MonkeyPatch) -> Iterator[LangfusePromptServer]:
    server = LangfusePromptServer()
    monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", PUBLIC)
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", SECRET)
    monkeypatch.setenv("LANGFUSE_HOST", server.url)
    yield server
    server.server.shutdown()
    server.server.server_close()


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


@pytest.fixture
def prompts(tmp_path: Path) -> Path:
    """A copy of the shipped prompts in a git checkout of its own, committed."""
    target = tmp_path / "prompts"
    shutil.copytree(REPO / "prompts", target)
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-q", "-m", "prompts")
    return target


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_push_creates_every_version_with_matching_numbers_and_labels(
    langfuse: LangfusePromptServer, prompts: Path
) -> None:
    code, out = run("prompts", "push", "--to", "langfuse", "--dir", str(prompts))
    assert code == 0, out
    registry = PromptRegistry(prompts)
    for name in registry.names():
        assert [v["version"] for v in langfuse.prompts[name]] == registry.versions(name)
        for remote in langfuse.prompts[name]:
            local = registry.get(name, version=remote["version"])
            assert remote["config"]["aiapp"]["file"] == local.source
            assert remote["config"]["aiapp"]["hash"] == local.content_hash
            assert [m["content"] for m in remote["prompt"]] == [m.content for m in local.messages]
        expected = {k: v for k, v in registry.labels(name).items() if k != "latest"}
        assert {k: v for k, v in langfuse.labels(name).items() if k != "latest"} == expected
    assert langfuse.auth == {"Basic " + base64.b64encode(f"{PUBLIC}:{SECRET}".encode()).decode()}

    writes = len(langfuse.writes)
    code, out = run("prompts", "push", "--to", "langfuse", "--dir", str(prompts))
    assert code == 0 and "pushed 0 version(s), 0 label change(s)" in out
    assert len(langfuse.writes) == writes  # a second push changes nothing


def test_push_moves_a_label_promoted_in_git(langfuse: LangfusePromptServer, prompts: Path) -> None:
    assert run("prompts", "push", "--to", "langfuse", "--dir", str(prompts))[0] == 0
    promote(prompts, "support_answer@v3", label="production")
    code, out = run("prompts", "push", "--to", "langfuse", "--dir", str(prompts))
    assert code == 0, out
    assert langfuse.labels("support_answer")["production"] == 3
    assert "label support_answer v3" in out


def test_push_refuses_when_langfuse_holds_other_content_for_a_version(
    langfuse: LangfusePromptServer, prompts: Path
) -> None:
    langfuse.add_from_ui("support_answer", [{"role": "user", "content": "Edited in the UI"}], ["production"])
    code, out = run("prompts", "push", "--to", "langfuse", "--dir", str(prompts))
    assert code == 1
    assert "push refused" in out and "+++ " in out and "-Edited in the UI" not in out
    assert "Edited in the UI" in out  # the diff shows Langfuse's side
    assert [v["version"] for v in langfuse.prompts["support_answer"]] == [1]  # nothing was pushed
    assert "ticket_triage" not in langfuse.prompts


def test_pull_writes_a_version_made_in_langfuse_and_moves_its_label(
    langfuse: LangfusePromptServer, prompts: Path
) -> None:
    assert run("prompts", "push", "--to", "langfuse", "--dir", str(prompts))[0] == 0
    _git(prompts.parent, "commit", "-q", "-am", "pushed", "--allow-empty")
    version = langfuse.add_from_ui(
        "support_answer",
        [
            {"role": "system", "content": "Answer from <context> only."},
            {"role": "user", "content": "{{ question }}"},
        ],
        ["production"],
    )
    assert version == 4
    code, out = run("prompts", "pull", "--from", "langfuse", "--dir", str(prompts))
    assert code == 0, out
    pulled = PromptRegistry(prompts).get("support_answer", version=4)
    assert [m.content for m in pulled.messages] == ["Answer from <context> only.", "{{ question }}"]
    assert PromptRegistry(prompts).labels("support_answer")["production"] == 4
    assert langfuse.labels("support_answer")["latest"] == 4
    labels_text = (prompts / "labels.yaml").read_text()
    assert "support_answer@v4" in labels_text and "# Deploy labels" in labels_text  # comments kept
    # the versions aiapp pushed come back byte for byte: nothing else changed
    status = subprocess.run(
        ["git", "status", "--porcelain"], cwd=prompts, capture_output=True, text=True
    ).stdout
    assert sorted(line[3:] for line in status.splitlines()) == [
        "prompts/labels.yaml",
        "prompts/support_answer/v4.yaml",
    ]


def test_pull_refuses_to_overwrite_uncommitted_label_edits_and_shows_the_diff(
    langfuse: LangfusePromptServer, prompts: Path
) -> None:
    assert run("prompts", "push", "--to", "langfuse", "--dir", str(prompts))[0] == 0
    langfuse.add_from_ui("support_answer", [{"role": "user", "content": "{{ question }}"}], ["production"])
    labels = prompts / "labels.yaml"
    labels.write_text(labels.read_text() + "# a local edit, not committed\n")
    before = labels.read_text()
    code, out = run("prompts", "pull", "--from", "langfuse", "--dir", str(prompts))
    assert code == 1
    assert "uncommitted local changes" in out and "pull refused" in out
    assert "-  - support_answer@v2" in out and "+  - support_answer@v4" in out
    assert labels.read_text() == before and not (prompts / "support_answer" / "v4.yaml").exists()


def test_pull_refuses_when_a_local_version_file_differs(
    langfuse: LangfusePromptServer, prompts: Path
) -> None:
    assert run("prompts", "push", "--to", "langfuse", "--dir", str(prompts))[0] == 0
    path = prompts / "math_answer" / "v1.yaml"
    path.write_text(path.read_text().replace("description:", "description: locally edited,", 1))
    code, out = run("prompts", "pull", "--from", "langfuse", "--dir", str(prompts))
    assert code == 1 and "locally edited" in out and str(path) in out
    code, out = run("prompts", "pull", "--from", "langfuse", "--dir", str(prompts), "--dry-run", "--json")
    assert code == 1 and json.loads(out.split("\npull refused")[0])["conflicts"]


def test_an_unknown_backend_is_a_clear_error(prompts: Path) -> None:
    result = runner.invoke(app, ["prompts", "push", "--to", "gitlab", "--dir", str(prompts)])
    assert result.exit_code == 2 and "only 'langfuse'" in result.output

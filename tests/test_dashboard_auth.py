"""Who may read the dashboard: the token check on every route, the loopback Host check, the bind rules."""
from __future__ import annotations

import asyncio
import warnings

import pytest

pytest.importorskip("starlette", reason="the dashboard extra is not installed")
with warnings.catch_warnings():  # newer Starlette asks for httpx2 but still drives httpx
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient  # noqa: E402

from colearn.dashboard.app import create_app  # noqa: E402
from colearn.dashboard.auth import COOKIE, token_digest  # noqa: E402
from colearn.dashboard.server import DashboardServer, resolve_dashboard_tokens  # noqa: E402
from colearn.dashboard.source import FolderSource  # noqa: E402
from tests.test_dashboard_model import synthetic_results  # noqa: E402

ROUTES = ["/", "/api/view", "/static/app.js", "/static/charts.js", "/static/style.css"]


@pytest.fixture
def folder(tmp_path):
    synthetic_results(n_rounds=3).save(tmp_path / "results.json")
    return tmp_path


def guarded_client(folder, tokens=("s3cret", "other")):
    return TestClient(create_app(FolderSource(folder), tokens=list(tokens), loopback_only=False),
                      base_url="http://10.0.0.5:8765", follow_redirects=False)


def test_every_route_refuses_a_request_without_a_valid_token(folder):
    with guarded_client(folder) as client:
        for route in ROUTES + ["/events", "/static/missing.js"]:
            assert client.get(route).status_code == 401, route
            assert client.get(route, headers={"Authorization": "Bearer wrong"}).status_code == 401, route
            assert client.get(route, headers={"Authorization": "s3cret"}).status_code == 401, route
            for cookie in (token_digest("wrong"), "s3cret"):  # the token itself is no digest either
                client.cookies.set(COOKIE, cookie)
                assert client.get(route).status_code == 401, route
                client.cookies.clear()
        assert client.get("/?token=wrong").status_code == 401


def test_a_valid_token_opens_every_route_as_header_or_once_in_the_address(folder):
    with guarded_client(folder) as client:
        for token in ("s3cret", "other"):
            for route in ROUTES:
                assert client.get(route, headers={"Authorization": f"Bearer {token}"}).status_code == 200, route
        signed_in = client.get("/?token=s3cret&x=1")
        assert signed_in.status_code == 303 and signed_in.headers["location"] == "/?x=1"
        cookie = signed_in.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "s3cret" not in cookie
        client.cookies.set(COOKIE, token_digest("s3cret"))
        for route in ROUTES:
            answer = client.get(route)
            assert answer.status_code == 200, route
            assert "default-src 'self'" in answer.headers["content-security-policy"]
        assert client.get("/api/view").json()["rounds_done"] == 3


def test_signing_in_never_redirects_to_another_site(folder):
    guard = create_app(FolderSource(folder), tokens=["s3cret"], loopback_only=False)

    async def location_after_sign_in(path: str) -> str:
        sent = []

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            sent.append(message)

        await guard({"type": "http", "method": "GET", "path": path, "query_string": b"token=s3cret",
                     "headers": [(b"host", b"10.0.0.5:8765")]}, receive, send)
        assert sent[0]["status"] == 303
        return dict(sent[0]["headers"])[b"location"].decode()

    for path, expected in (("//elsewhere.example/", "/elsewhere.example/"), ("/\\elsewhere.example", "/elsewhere.example"),
                           ("/api/view", "/api/view")):
        assert asyncio.run(location_after_sign_in(path)) == expected


def test_the_dashboard_is_read_only(folder):
    with guarded_client(folder) as client:
        headers = {"Authorization": "Bearer s3cret"}
        for route in ("/", "/api/view", "/events"):
            assert client.post(route, headers=headers).status_code == 405
            assert client.delete(route, headers=headers).status_code == 405


def test_on_loopback_a_foreign_host_header_is_refused(folder):
    app = create_app(FolderSource(folder))
    with TestClient(app, base_url="http://127.0.0.1:8765") as client:
        assert client.get("/api/view").status_code == 200
        assert client.get("/api/view", headers={"Host": "localhost:8765"}).status_code == 200
        assert client.get("/api/view", headers={"Host": "attacker.example:8765"}).status_code == 400
        assert client.get("/", headers={"Host": "127.0.0.1.attacker.example"}).status_code == 400
        assert client.get("/", headers={"Host": "[::1]:8765"}).status_code == 200
        assert client.get("/", headers={"Host": "127.0.0.1:8765"}).status_code == 200


def test_a_non_loopback_bind_needs_a_token_from_the_file_or_the_environment(folder, tmp_path, monkeypatch):
    monkeypatch.delenv("COLEARN_TOKEN", raising=False)
    with pytest.raises(ValueError, match="needs a token: give --token-file"):
        DashboardServer(folder, host="0.0.0.0")
    assert resolve_dashboard_tokens("127.0.0.1") == []
    token_file = tmp_path / "tokens"
    token_file.write_text("# comment\nabc\n")
    assert DashboardServer(folder, host="0.0.0.0", token_file=token_file).tokens == ["abc"]
    monkeypatch.setenv("COLEARN_TOKEN", "t1,t2")
    assert DashboardServer(folder, host="0.0.0.0").tokens == ["t1", "t2"]
    with pytest.raises(ValueError, match="port must be"):
        DashboardServer(folder, port=70000)


def test_the_cli_refuses_a_public_bind_without_a_token(folder, monkeypatch):
    from typer.testing import CliRunner

    from colearn.cli import app

    monkeypatch.delenv("COLEARN_TOKEN", raising=False)
    result = CliRunner().invoke(app, ["dashboard", str(folder), "--host", "0.0.0.0"])
    assert result.exit_code == 2 and "needs a token" in result.output
    result = CliRunner().invoke(app, ["dashboard", str(folder / "nothing-here")])
    assert result.exit_code == 2 and "PATH: no such file" in result.output


def test_open_event_streams_are_bounded(folder):
    from colearn.dashboard.app import MAX_STREAMS

    guard = create_app(FolderSource(folder))
    with TestClient(guard, base_url="http://127.0.0.1:8765") as client:
        guard.hub.listeners = MAX_STREAMS  # as if that many pages were open
        refused = client.get("/events")
        assert refused.status_code == 503 and "too many open pages" in refused.text

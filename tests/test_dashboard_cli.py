"""`colearn run --dashboard` serves the run's page while it goes; `colearn dashboard PATH` serves a folder."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from colearn.cli import app
from colearn.journal import RoundJournal
from colearn.results import ExperimentResults

pytest.importorskip("starlette", reason="the dashboard extra is not installed")
ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get_view(url: str) -> dict:
    with urllib.request.urlopen(url + "api/view", timeout=5) as answer:
        return json.loads(answer.read())


def test_run_with_dashboard_serves_each_round_while_the_run_goes(tmp_path, monkeypatch):
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    seen = []
    write_round = RoundJournal.on_round_end

    def write_then_look(journal, record):
        write_round(journal, record)
        deadline = time.monotonic() + 5
        view = get_view(url)
        while view["rounds_done"] <= record.round_index and time.monotonic() < deadline:
            time.sleep(0.05)
            view = get_view(url)
        seen.append((view["rounds_done"], view["status"]))

    monkeypatch.setattr(RoundJournal, "on_round_end", write_then_look)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["run", "--task", "iris", "--n-learners", "3", "--n-rounds", "3", "--out",
                                      str(out), "--no-plots", "-q", "--dashboard", "--dashboard-port", str(port)])
    assert result.exit_code == 0, result.output
    assert f"dashboard: {url}" in result.output
    assert seen == [(1, "running"), (2, "running"), (3, "running")]
    with pytest.raises(urllib.error.URLError):  # stopped with the run
        get_view(url)
    results = ExperimentResults.load(out / "results.json")
    assert len(results.rounds) == 3


def test_run_without_dashboard_serves_nothing(tmp_path, monkeypatch):
    from colearn.dashboard.process import DashboardProcess
    from colearn.dashboard.server import DashboardServer

    def refuse(*args, **kwargs):
        raise AssertionError("no dashboard was asked for")

    monkeypatch.setattr(DashboardServer, "start", refuse)
    monkeypatch.setattr(DashboardProcess, "start", refuse)
    result = CliRunner().invoke(app, ["run", "--task", "iris", "--n-learners", "2", "--n-rounds", "1", "--out",
                                      str(tmp_path), "--no-plots", "-q"])
    assert result.exit_code == 0, result.output
    assert "dashboard: http" not in result.output


@pytest.mark.slow
def test_the_dashboard_command_serves_a_finished_folder_until_stopped(tmp_path):
    from tests.test_dashboard_model import synthetic_results

    synthetic_results(n_rounds=4).save(tmp_path / "results.json")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "colearn.cli", "dashboard", str(tmp_path), "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        line = process.stdout.readline()  # the URL line comes first; bounded by the test's timeout below
        assert "dashboard of" in line, line
        url = line.split(": ", 1)[1].split(" ")[0]
        assert url.startswith("http://127.0.0.1:")
        view = get_view(url)
        assert view["status"] == "finished" and view["rounds_done"] == 4
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
    assert process.returncode == 0


def test_a_page_process_that_cannot_start_says_why(tmp_path, monkeypatch):
    from colearn.dashboard.process import DashboardProcess

    monkeypatch.delenv("COLEARN_TOKEN", raising=False)
    with pytest.raises(ValueError, match="needs a token"):  # refused before any process starts
        DashboardProcess(tmp_path, host="0.0.0.0")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        page = DashboardProcess(tmp_path, port=taken.getsockname()[1])
        with pytest.raises(ValueError, match="cannot bind"):
            page.start()
    assert page.process is None

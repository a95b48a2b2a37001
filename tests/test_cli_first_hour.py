"""A new user's first hour with the real `colearn` command (a subprocess): one-line errors naming what to do,
output that agrees with itself (rounds from 0 everywhere, the metric named), and no framework noise."""
from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Iterator, List

import pytest

ROOT = Path(__file__).resolve().parents[1]


def colearn(*args: str, blocked: Path | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    """Run `colearn ARGS` as a user would (``python -m colearn.cli`` is the script's entry point, main());
    ``blocked`` is a directory of stand-in packages that fail to import, as on a machine without an extra."""
    paths = [str(blocked)] if blocked else []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*paths, str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "COLUMNS": "200", "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, "-m", "colearn.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """The single ``error: ...`` line a failed command printed on stderr (no traceback, nothing else)."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    return lines[0]


def block(tmp_path: Path, *modules: str) -> Path:
    """A directory whose packages stand in for ``modules`` and fail to import (ModuleNotFoundError)."""
    root = tmp_path / "blocked"
    for module in modules:
        (root / module).mkdir(parents=True, exist_ok=True)
        (root / module / "__init__.py").write_text(
            f"raise ModuleNotFoundError(\"No module named '{module}'\", name='{module}')\n")
    return root


# ---- errors ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("modules, args, install", [
    (("torch",), ["run", "--learner", "torch-mlp"], "pip install 'colearn[pytorch]'"),
    (("tensorflow",), ["run", "--learner", "keras-mlp"], "pip install 'colearn[keras]'"),
    (("ray",), ["run", "--backend", "ray"], "pip install 'colearn[ray]'"),
    (("web3", "eth_account", "eth_tester", "vyper"), ["run", "--backend", "ledger"], "pip install 'colearn[ledger]'"),
    (("grpc",), ["run", "--learners", "127.0.0.1:1,127.0.0.1:2"], "pip install 'colearn[grpc]'"),
    (("web3", "eth_account"), ["audit", "."], "pip install 'colearn[ledger]'"),
])
def test_a_missing_extra_is_one_line_with_its_install_command(tmp_path, modules, args, install):
    line = one_line_error(colearn(*args, "--out", str(tmp_path / "out"), blocked=block(tmp_path, *modules))
                          if args[0] == "run" else colearn(*args, blocked=block(tmp_path, *modules)))
    assert install in line  # the extra's name in brackets survives (rich markup would eat it)


def test_learners_lists_the_extra_each_needs():
    listed = colearn("learners").stdout
    assert re.search(r"torch-cnn\s+\[pytorch\]", listed) and re.search(r"keras-mlp\s+\[keras\]", listed)
    assert re.search(r"sgd\s+\[other\]", listed)


@pytest.mark.parametrize("learner", ["torch-cnn", "keras-cnn"])
def test_every_cnn_refuses_a_task_without_images(tmp_path, learner):
    line = one_line_error(colearn("run", "--learner", learner, "--task", "iris", "--out", str(tmp_path)))
    assert f"learner '{learner}' needs image data" in line and "4 flat features" in line


@pytest.mark.parametrize("param, named", [("foo=1", "foo"), ("eta0=-1", "eta0"),
                                          ("epochs_per_proposal=abc", "epochs_per_proposal")])
def test_a_learner_parameter_the_factory_refuses_is_one_line_naming_it(tmp_path, param, named):
    line = one_line_error(colearn("run", "-p", param, "--n-rounds", "1", "--out", str(tmp_path)))
    assert "learner 'sgd'" in line and named in line


# ---- help and versions ------------------------------------------------------------------------------
def test_version_option_and_command():
    assert colearn("--version").stdout.strip() == f"colearn {metadata.version('colearn')}"
    listed = dict(line.split(": ", 1) for line in colearn("version").stdout.splitlines())
    for dist in ("ray", "grpcio", "web3", "keras", "torch", "tensorflow", "starlette"):
        try:
            assert listed[dist] == metadata.version(dist)
        except metadata.PackageNotFoundError:
            assert dist not in listed


def test_run_help_shows_no_bool_types_and_one_default_style():
    text = colearn("run", "--help").stdout
    assert "<bool>" not in text and "[default:" not in text
    assert "(default 5)" in text and "(default colearn-out)" in text and "KEY=VALUE" in text
    served = colearn("serve", "--help").stdout
    assert "<bool>" not in served and "[default:" not in served and "(default 50051)" in served


# ---- output that agrees with itself -------------------------------------------------------------------
@pytest.fixture(scope="module")
def baseline_run(tmp_path_factory) -> Iterator[tuple[Path, subprocess.CompletedProcess]]:
    out = tmp_path_factory.mktemp("baseline")
    result = colearn("run", "--task", "iris", "--n-learners", "3", "--n-rounds", "3", "--baseline", "--out", str(out))
    assert result.returncode == 0, result.stderr
    yield out, result


def test_rounds_are_numbered_from_0_on_every_surface(baseline_run):
    out, result = baseline_run
    console = [int(n) for n in re.findall(r"^round\s+(\d+)\s+proposer", result.stdout, flags=re.M)]
    saved = json.loads((out / "results.json").read_text())
    with (out / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    csv_rounds = sorted({int(row["round"]) for row in rows})
    assert console == [r["round_index"] for r in saved["rounds"]] == [0, 1, 2]
    assert csv_rounds == [-1, 0, 1, 2]  # -1: the initial evaluation, before round 0


def test_results_name_the_metric_and_the_table_shows_it_on_one_line(baseline_run):
    out, result = baseline_run
    saved = json.loads((out / "results.json").read_text())
    assert (saved["metric"], saved["higher_is_better"]) == ("accuracy", True)
    assert "accuracy (higher is better) of the held models after 3 rounds, " in result.stdout  # not wrapped
    assert "3 x sgd learners on iris (iid), 3 rounds" in result.stdout


def test_baseline_is_in_the_csv(baseline_run):
    out, _ = baseline_run
    saved = json.loads((out / "results.json").read_text())["extra"]["baseline_alone"]
    with (out / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        alone = saved[int(row["learner"])]
        assert float(row["alone_test_score"]) == pytest.approx(alone["test_score"])
        assert float(row["alone_pooled_test_score"]) == pytest.approx(alone["pooled_test_score"])


def test_one_round_is_singular(tmp_path):
    result = colearn("run", "--n-rounds", "1", "--no-plots", "-q", "--out", str(tmp_path))
    assert result.returncode == 0 and ", 1 round, backend" in result.stdout and "after 1 round," in result.stdout
    assert "1 rounds" not in result.stdout


def test_the_readme_snippet_and_colearn_run_give_the_same_number(tmp_path):
    readme = (ROOT / "README.md").read_text()
    snippet = re.search(r"```python\n(.*?)```", readme, flags=re.S).group(1)
    printed = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, check=True,
                             cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=180).stdout.split()
    assert colearn("run", "--no-plots", "-q", "--out", str(tmp_path)).returncode == 0
    saved = json.loads((tmp_path / "results.json").read_text())
    final = saved["rounds"][-1]["held_test_scores"]
    assert float(printed[-1]) == sum(final) / len(final)


# ---- examples --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("example, framework", [("pytorch_mnist.py", "torch"), ("keras_mnist.py", "tensorflow")])
def test_mnist_examples_answer_help_and_missing_files_before_importing_the_framework(tmp_path, example, framework):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(block(tmp_path, framework)), str(ROOT)])}
    script = str(ROOT / "examples" / example)
    shown = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True, env=env, timeout=60)
    assert shown.returncode == 0 and "--data" in shown.stdout  # the framework (blocked here) was never imported
    missing = subprocess.run([sys.executable, script, "--data", str(tmp_path / "nothing")], capture_output=True,
                             text=True, env=env, timeout=60)
    lines = missing.stderr.strip().splitlines()
    assert missing.returncode != 0 and len(lines) == 1 and "train-images-idx3-ubyte" in lines[0]
    assert "--data" in lines[0] and "Traceback" not in missing.stderr


# ---- framework noise -------------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_keras_run_shows_colearn_output_not_tensorflow_noise(tmp_path):
    pytest.importorskip("tensorflow")
    result = colearn("run", "--learner", "keras-mlp", "--n-learners", "2", "--n-rounds", "2", "--no-plots",
                     "--out", str(tmp_path), timeout=300)
    assert result.returncode == 0, result.stderr
    for noise in ("cuInit", "oneDNN", "cuda", "absl", "retracing", "I0000", "E0000", "WARNING"):
        assert noise not in result.stderr and noise not in result.stdout, noise
    assert "round   1" in result.stdout


def test_the_cli_quiets_rays_notes_without_disabling_authentication(monkeypatch):
    import logging

    from colearn.cli.common import quiet_frameworks

    for name in ("TF_CPP_MIN_LOG_LEVEL", "COLEARN_QUIET_FRAMEWORKS", "GRPC_VERBOSITY",
                 "RAY_AUTH_MODE"):  # a Ray started earlier in this process sets RAY_AUTH_MODE for it
        monkeypatch.delenv(name, raising=False)
    note, started = (logging.getLogger("ray._private.authentication.authentication_token_setup"),
                     logging.getLogger("ray._private.worker"))  # "Token authentication is enabled", "Started ..."
    levels = note.level, started.level
    try:
        quiet_frameworks()
        assert not note.isEnabledFor(logging.WARNING) and note.isEnabledFor(logging.ERROR)
        assert not started.isEnabledFor(logging.INFO) and started.isEnabledFor(logging.WARNING)
        assert os.environ["COLEARN_QUIET_FRAMEWORKS"] == "1" and "RAY_AUTH_MODE" not in os.environ
    finally:
        note.setLevel(levels[0])
        started.setLevel(levels[1])


# ---- learners on other machines (servers in this process, on 127.0.0.1) ---------------------------------------
@pytest.fixture
def served(tmp_path) -> Iterator[callable]:
    """Start sgd-on-iris learner servers on free loopback ports; stopped after the test."""
    pytest.importorskip("grpc")
    from colearn.grpc.factory import LearnerSpec
    from colearn.grpc.server import serve
    from colearn.runner import RunConfig

    started: List = []

    def start(n: int = 2, **options) -> List:
        config = RunConfig(task="iris", n_learners=n)
        for i in range(n):
            spec = LearnerSpec(run_config=config, index=i)
            started.append(serve(spec.build(), "127.0.0.1", 0, description=spec.describe(), **options))
        return started

    yield start
    for server in started:
        server.stop(grace=0)


def addresses(servers) -> str:
    return ",".join(server.address for server in servers)


def test_learners_that_cannot_be_reached_stop_the_run_before_it_starts(tmp_path):
    pytest.importorskip("grpc")
    import socket

    ports = []
    for _ in range(2):  # ports that were free a moment ago: nobody serves there
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            ports.append(probe.getsockname()[1])
    line = one_line_error(colearn("run", "--learners", ",".join(f"127.0.0.1:{p}" for p in ports),
                                  "--out", str(tmp_path)))
    assert "cannot reach the learner servers" in line and "connection refused" in line
    assert not (tmp_path / "results.json").exists()


def test_a_tls_server_reached_without_ca_cert_says_so(tmp_path, served):
    from colearn.grpc.security import ServerTLS, make_self_signed

    cert, key = make_self_signed(tmp_path / "certs")
    servers = served(tls=ServerTLS(str(cert), str(key)))
    line = one_line_error(colearn("run", "--learners", addresses(servers), "--out", str(tmp_path / "out")))
    assert "the server speaks TLS: pass --ca-cert" in line


def test_a_wrong_token_is_named(tmp_path, served):
    servers = served(tokens=["right-token"])
    token_file = tmp_path / "token"
    token_file.write_text("wrong-token\n")
    line = one_line_error(colearn("run", "--learners", addresses(servers), "--token-file", str(token_file),
                                  "--out", str(tmp_path / "out")))
    assert "refused the credentials" in line and "--token-file" in line and "wrong-token" not in line


@pytest.mark.parametrize("args, named", [(["--n-learners", "3"], "--n-learners 3 contradicts --learners"),
                                         (["--backend", "ray"], "--backend ray contradicts --learners"),
                                         (["--learner", "sgd"], "--learner does not apply with --learners"),
                                         (["--task", "iris"], "--task does not apply with --learners")])
def test_options_that_contradict_learners_are_refused(tmp_path, args, named):
    pytest.importorskip("grpc")
    line = one_line_error(colearn("run", "--learners", "127.0.0.1:1,127.0.0.1:2", *args, "--out", str(tmp_path)))
    assert named in line


def test_results_record_what_the_servers_run(tmp_path, served):
    servers = served()
    result = colearn("run", "--learners", addresses(servers), "--n-rounds", "1", "--no-plots", "-q",
                     "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    config = json.loads((tmp_path / "results.json").read_text())["config"]
    assert (config["learner"], config["task"], config["backend"]) == ("sgd", "iris", "grpc")
    reported = config["backend_options"]["servers"]
    assert [s["address"] for s in reported] == [s.address for s in servers]
    assert reported[1]["learner"].startswith("sgd on iris (iid), learner 1 of 2") and reported[0]["healthy"]
    assert "2 x sgd learners on iris" in result.stdout

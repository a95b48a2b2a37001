"""RayBackend on a local Ray with 2 CPUs: equivalence with local, failure semantics, clean shutdown.

Ray's startup is slow, so one module-scoped cluster serves every test and the tests are few.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
import warnings

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'colearn[ray]')")

from colearn.backends.base import Failure  # noqa: E402
from colearn.backends.local import LocalBackend  # noqa: E402
from colearn.backends.ray_backend import RayBackend, init_local_ray  # noqa: E402
from colearn.experiment import Experiment  # noqa: E402
from colearn.protocol import ProtocolConfig  # noqa: E402
from colearn.runner import RunConfig, run  # noqa: E402
from tests.backend_helpers import comparable, factories, wait_dead  # noqa: E402

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]
HAS_SKLEARN_LEARNER = importlib.util.find_spec("colearn_other.sklearn_learner") is not None


@pytest.fixture(scope="module")
def local_ray():
    started = not ray.is_initialized()
    if started:
        init_local_ray(num_cpus=2, log_to_driver=False)
    yield
    if started:
        ray.shutdown()


def test_ray_matches_local_and_a_backend_never_shuts_down_a_ray_it_did_not_start(local_ray):
    config = ProtocolConfig(vote_threshold=1.0, selector="random", seed=3)
    local = Experiment(LocalBackend([f() for f in factories(4, seed=7)]), config).run(8)
    with RayBackend(factories(4, seed=7), timeout=120) as backend:
        assert not backend.started_ray
        remote = Experiment(backend, config).run(8)
        pids = backend.actor_pids()
    assert remote.backend == "ray"
    assert comparable(remote.to_json(include_timings=False)) == comparable(local.to_json(include_timings=False))
    assert {r.accepted for r in local.rounds} == {True, False}
    assert ray.is_initialized()
    assert wait_dead(pids, timeout=20) == [], "actor processes outlived close()"


def test_raising_crashing_and_hanging_actors_abstain_and_the_experiment_goes_on(local_ray):
    faults = {1: (("test", 2, "raise"),), 2: (("test", 2, "exit"),), 3: (("test", 2, "hang"),)}
    with RayBackend(factories(5, faults=faults), timeout=8) as backend:
        old_pids = backend.actor_pids()
        experiment = Experiment(backend, ProtocolConfig())
        first = experiment.run_round()
        assert "injected failure in test call 2" in first.vote_errors[1]
        assert "died" in first.vote_errors[2]
        assert "no answer within 8 s" in first.vote_errors[3]
        assert first.votes[1:4] == [None, None, None] and first.votes[4] is not None
        assert first.abstentions == 3
        second = experiment.run_round()  # the dead and the killed actor were rebuilt from their factories
        assert second.votes[2] is not None and second.votes[3] is not None
        new_pids = backend.actor_pids()
        assert new_pids[1] == old_pids[1] and new_pids[2] != old_pids[2] and new_pids[3] != old_pids[3]
    assert isinstance(backend.propose(0), Failure)  # closed: failures, not hangs


@pytest.mark.skipif(not HAS_SKLEARN_LEARNER, reason="colearn_other (the sgd learner) is not installed")
def test_run_config_sgd_digits_on_ray_equals_local(local_ray):
    config = RunConfig(task="digits", learner="sgd", n_learners=3, n_rounds=3, seed=5)
    local = run(config)
    remote = run(config.model_copy(update={"backend": "ray", "backend_options": {"timeout": 300}}))
    assert comparable(remote.to_json(include_timings=False)) == comparable(local.to_json(include_timings=False))


LOOPBACK_ADDRESSES = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}


def _listening(pids: set) -> list:
    """(pid, process name, address, port) of every listening TCP socket of these processes (as `ss -ltnp`)."""
    psutil = pytest.importorskip("psutil")  # Ray ships it
    names = {}
    for pid in pids:
        try:
            names[pid] = psutil.Process(pid).name()
        except psutil.Error:
            continue
    return [(c.pid, names[c.pid], c.laddr.ip, c.laddr.port) for c in psutil.net_connections("tcp")
            if c.status == psutil.CONN_LISTEN and c.pid in names]


def test_a_local_cluster_colearn_starts_listens_on_loopback_only(tmp_path):
    """`colearn run --backend ray`: every socket its driver, GCS, raylet and workers listen on is loopback."""
    psutil = pytest.importorskip("psutil")
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1"}  # Ray's own default on Linux
    command = [sys.executable, "-m", "colearn.cli", "run", "--backend", "ray", "--task", "iris", "--n-learners", "2",
               "--n-rounds", "6", "--no-plots", "--quiet", "--out", str(tmp_path)]
    driver = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen: set = set()
    deadline = time.monotonic() + 240
    try:
        while driver.poll() is None and time.monotonic() < deadline:
            try:
                tree = {driver.pid} | {c.pid for c in psutil.Process(driver.pid).children(recursive=True)}
            except psutil.Error:
                break
            seen.update(_listening(tree))
            time.sleep(0.3)
    finally:
        if driver.poll() is None:
            driver.kill()
        output = driver.communicate(timeout=30)[0]
    assert driver.returncode == 0, output
    names = {name for _, name, _, _ in seen}
    assert {"gcs_server", "raylet"} <= names and any(n.startswith("ray::") for n in names), seen
    assert any(pid == driver.pid for pid, _, _, _ in seen), "the driver's own socket was not seen"
    outside = [s for s in seen if s[2] not in LOOPBACK_ADDRESSES]
    assert outside == [], f"sockets outside loopback: {outside}"


def test_joining_a_cluster_without_token_authentication_warns(monkeypatch):
    """Joining stays the user's choice; a cluster whose token authentication is off gets a warning."""
    from colearn.backends import ray_cluster

    assert isinstance(ray_cluster._token_auth_enabled(), bool)  # Ray's own check is reachable

    calls = []
    monkeypatch.setattr(ray_cluster, "_import_ray", lambda: type("FakeRay", (), {
        "init": staticmethod(lambda **kw: calls.append(kw))}))
    monkeypatch.setattr(ray_cluster, "_token_auth_enabled", lambda: False)
    with pytest.warns(RuntimeWarning, match="without token authentication"):
        ray_cluster.join_ray("127.0.0.1:6379")
    monkeypatch.setattr(ray_cluster, "_token_auth_enabled", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ray_cluster.join_ray("127.0.0.1:6379")
    assert calls == [{"address": "127.0.0.1:6379"}] * 2

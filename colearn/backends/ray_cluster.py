"""Starting or joining the Ray cluster the ray backend runs on: a local cluster listens on 127.0.0.1 only.

On Linux, ``ray.init`` turns a loopback node address into the machine's reachable address and Ray's servers
bind to every interface. :func:`start_local_ray` starts Ray in its single-node mode instead, so that its GCS,
raylet, workers, agents and the driver listen on loopback; :func:`join_ray` connects to an existing cluster
(the user's choice) and warns when its token authentication is off.
"""
from __future__ import annotations

import contextlib
import os
import sys
import warnings
from typing import Any, Dict, Iterator


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("the ray backend needs Ray: pip install 'colearn[ray]'") from exc
    return ray


def local_runtime_env() -> Dict[str, Any]:
    """A runtime env that lets local Ray workers import what this driver can (its sys.path)."""
    paths = [p for p in sys.path if p and os.path.isdir(p)]
    existing = os.environ.get("PYTHONPATH")
    return {"env_vars": {"PYTHONPATH": os.pathsep.join(paths + ([existing] if existing else []))}}


LOOPBACK = "127.0.0.1"
# Off ("0"), Ray treats the machine as a single-node cluster and binds to loopback (read by Ray at import and
# by every process it starts).
_SINGLE_NODE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@contextlib.contextmanager
def _single_node_ray() -> Iterator[None]:
    """While starting a local Ray: every server it starts listens on loopback only."""
    previous = os.environ.get(_SINGLE_NODE_ENV)
    os.environ[_SINGLE_NODE_ENV] = "0"
    constants = sys.modules.get("ray._private.ray_constants")
    had_flag = constants is not None and hasattr(constants, "ENABLE_RAY_CLUSTER")
    flag = getattr(constants, "ENABLE_RAY_CLUSTER", None)
    if had_flag:
        constants.ENABLE_RAY_CLUSTER = False  # ray was imported before the variable was set
    try:
        yield
    finally:
        if had_flag:
            constants.ENABLE_RAY_CLUSTER = flag
        if previous is None:
            os.environ.pop(_SINGLE_NODE_ENV, None)
        else:
            os.environ[_SINGLE_NODE_ENV] = previous


def _local_init_options(options: Dict[str, Any]) -> Dict[str, Any]:
    options = dict(options)
    options.setdefault("include_dashboard", False)
    options.setdefault("dashboard_host", LOOPBACK)
    options.setdefault("runtime_env", local_runtime_env())
    options.setdefault("_node_ip_address", LOOPBACK)
    if isinstance(options["runtime_env"], dict):  # workers, too, keep to loopback
        env_vars = {_SINGLE_NODE_ENV: "0", **options["runtime_env"].get("env_vars", {})}
        options["runtime_env"] = {**options["runtime_env"], "env_vars": env_vars}
    return options


def start_local_ray(**options: Any) -> None:
    """Start a local, single-node Ray that listens on 127.0.0.1 only and whose workers see this driver's modules.

    ``options`` go to ``ray.init`` (defaults: no dashboard, dashboard host 127.0.0.1, node address 127.0.0.1).
    """
    ray = _import_ray()
    with _single_node_ray():
        ray.init(**_local_init_options(options))


init_local_ray = start_local_ray  # the name tests and benchmarks use


def join_ray(address: str, **options: Any) -> None:
    """Connect to an existing cluster at ``address``; warn when its token authentication is off."""
    ray = _import_ray()
    ray.init(address=address, **options)
    if not _token_auth_enabled():
        warnings.warn(f"the Ray cluster at {address} runs without token authentication: anyone who reaches its "
                      "ports can run code on it (set RAY_AUTH_MODE=token on the cluster and here)",
                      RuntimeWarning, stacklevel=3)


def _token_auth_enabled() -> bool:
    try:
        from ray._private.authentication.authentication_utils import is_token_auth_enabled
    except ImportError:  # a Ray without token authentication
        return False
    return bool(is_token_auth_enabled())


__all__ = ["LOOPBACK", "init_local_ray", "join_ray", "local_runtime_env", "start_local_ray"]

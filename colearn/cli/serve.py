"""`colearn serve` (a learner server) and `colearn make-cert` (a self-signed pair for trying TLS).

Registered on the main app by :func:`register`; also :func:`grpc_backend_options`, which turns
`colearn run --learners host:port,...` options into a RunConfig's backend options (paths, no secrets).
"""
from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Dict, List, Optional

import typer
from rich.markup import escape

from colearn.cli.common import console, fail as _fail, option, parse_key_values


def _print_catalogue() -> None:
    from colearn.grpc.factory import catalogue

    info = catalogue()
    console.print("[bold]models[/] (--learner):", highlight=False)
    for name, model in info["models"].items():
        console.print(escape(f"  {name:<15} [{model['extra']}]  {model['description']}"), highlight=False,
                      soft_wrap=True)
    console.print("[bold]data loaders[/] (--task):", highlight=False)
    for name, what in info["data_loaders"].items():
        console.print(f"  {name:<15} {what}", highlight=False)
    console.print("[bold]which fit together[/]:", highlight=False)
    for name, tasks in info["compatible"].items():
        console.print(f"  {name:<15} {', '.join(tasks)}", highlight=False)
    console.print("or --entry-point module:function --params '{JSON}' for any learner you build yourself",
                  highlight=False)


def serve(
    learner: Optional[str] = typer.Option(None, help="registered learner, see --list (default sgd)"),
    task: Optional[str] = typer.Option(None, help="data loader: digits, breast_cancer, iris, wine, csv, npz (default digits)"),
    data_path: Optional[Path] = typer.Option(None, "--data-path", help="local CSV or .npz for --task csv/npz"),
    target: Optional[str] = typer.Option(None, help="target column of a CSV file"),
    n_learners: Optional[int] = typer.Option(None, "--n-learners", help="learners the data is split among (default 5)"),
    index: int = option(0, "--index", help="which share of the split this server's learner holds"),
    seed: Optional[int] = typer.Option(None, help="experiment seed (same as `colearn run --seed`)"),
    partition: Optional[str] = typer.Option(None, help="iid, dirichlet or shards (default iid)"),
    alpha: Optional[float] = typer.Option(None, help="Dirichlet concentration"),
    learner_param: List[str] = typer.Option([], "--learner-param", "-p", help="learner setting KEY=VALUE"),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML/TOML file with `colearn run`'s keys"),
    entry_point: Optional[str] = typer.Option(None, "--entry-point", help="module:function that returns an MLI"),
    params: Optional[str] = typer.Option(None, "--params", help="JSON object of keyword arguments for --entry-point"),
    host: str = option("127.0.0.1", help="address to bind; off loopback TLS is required"),
    port: int = option(50051, help="port to bind (0: any free port; see --port-file)"),
    port_file: Optional[Path] = typer.Option(None, "--port-file", help="write the bound port here once serving"),
    cert: Optional[Path] = typer.Option(None, help="TLS certificate (PEM); see `colearn make-cert`"),
    key: Optional[Path] = typer.Option(None, help="TLS private key (PEM)"),
    client_ca: Optional[Path] = typer.Option(None, "--client-ca", help="require client certificates signed by this CA"),
    token_file: Optional[Path] = typer.Option(None, "--token-file",
                                              help="accepted bearer tokens, one per line (default $COLEARN_TOKEN)"),
    insecure: bool = typer.Option(False, "--insecure", help="allow plaintext on a non-loopback address"),
    no_auth: bool = typer.Option(False, "--no-auth", help="allow no token/client cert on a non-loopback address"),
    max_bytes: int = option(1024**3, "--max-bytes", help="largest weights payload accepted, in bytes", shown="1 GiB"),
    max_header_bytes: int = option(4 * 1024**2, "--max-header-bytes",
                                   help="largest JSON header of uploaded weights, in bytes", shown="4 MiB"),
    max_arrays: int = option(10_000, "--max-arrays", help="most arrays uploaded weights may hold"),
    max_uploads: int = option(4, "--max-uploads", help="concurrent test/accept uploads; more are refused as busy "
                                                       "(clients retry)"),
    max_downloads: int = option(4, "--max-downloads", help="concurrent weights/model/proposal downloads"),
    idle_timeout: float = option(30.0, "--idle-timeout", help="cancel a stream that moves no data for this many "
                                                              "seconds", shown=30),
    stream_timeout: float = option(600.0, "--stream-timeout", help="cancel a stream that takes longer (seconds)",
                                   shown=600),
    workers: Optional[int] = typer.Option(None, "--workers", help="threads serving calls; more than "
                                                                  "--max-uploads + --max-downloads (default 4 more)"),
    list_: bool = typer.Option(False, "--list", help="list models, data loaders and which fit together, then exit"),
) -> None:
    """Serve one learner over gRPC (propose, test, accept, current weights/model, info)."""
    if list_:
        _print_catalogue()
        return
    from pydantic import ValidationError

    from colearn.grpc.factory import LearnerSpec, parse_json_params
    from colearn.grpc.limits import LimitError, ServerLimits, check_port
    from colearn.grpc.security import ServerTLS, resolve_tokens
    from colearn.grpc.server import serve as start_server

    try:  # nonsensical settings are refused before anything is built or bound
        check_port(port)
        limits = ServerLimits(max_bytes=max_bytes, max_header_bytes=max_header_bytes, max_arrays=max_arrays,
                              max_uploads=max_uploads, max_downloads=max_downloads, idle_timeout=idle_timeout,
                              stream_timeout=stream_timeout, workers=workers)
    except LimitError as exc:
        _fail(f"--{exc.parameter.replace('_', '-')} must be {exc.requirement}, got {exc.value!r}")
    try:
        if entry_point and (learner or task or config or learner_param or data_path):
            raise ValueError("--entry-point builds its own learner: drop --learner/--task/--config/--learner-param/"
                             "--data-path, or drop --entry-point")
        if params and not entry_point:
            raise ValueError("--params goes with --entry-point (named learners take --learner-param KEY=VALUE)")
        if entry_point:
            spec = LearnerSpec(entry_point=entry_point, params=parse_json_params(params, "--params"))
        else:
            from colearn.run_config import RunConfig, load_config_file

            given = {"task": task, "learner": learner, "n_learners": n_learners, "seed": seed,
                     "partition": partition, "alpha": alpha, "target": target,
                     "data_path": str(data_path) if data_path else None}
            overrides = {k: v for k, v in given.items() if v is not None}
            if learner_param:
                overrides["learner_params"] = parse_key_values(learner_param)
            run_config = load_config_file(config, overrides) if config else RunConfig(**overrides)
            spec = LearnerSpec(run_config=run_config, index=index)
        if (cert is None) != (key is None):
            raise ValueError("--cert and --key must be given together")
        if client_ca is not None and cert is None:
            raise ValueError("--client-ca (mutual TLS) needs --cert and --key")
        tls = ServerTLS(str(cert), str(key), str(client_ca) if client_ca else None) if cert else None
        tokens = resolve_tokens(token_file)
        mli = spec.build()
        server = start_server(mli, host, port, tls=tls, tokens=tokens, allow_insecure=insecure,
                              allow_unauthenticated=no_auth, limits=limits, description=spec.describe())
    except ValidationError as exc:
        _fail("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))
    except (ValueError, ImportError, OSError) as exc:
        _fail(str(exc))
    security = ("mutual TLS" if client_ca else "TLS") if tls else "plaintext (loopback)"
    auth = f"{len(tokens)} token(s)" if tokens else ("client certificates" if client_ca else "no authentication")
    console.print(f"serving {spec.describe()} on {server.address}, {security}, {auth}", highlight=False,
                  soft_wrap=True)
    sys.stdout.flush()
    if port_file is not None:
        partial = port_file.with_suffix(port_file.suffix + ".tmp")
        partial.write_text(str(server.port))
        os.replace(partial, port_file)
    done = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: done.set())
    while not done.wait(0.1):
        pass
    server.stop(grace=0.5)


def make_cert(
    out: Path = option(Path("certs"), "--out", help="directory for NAME.crt and NAME.key"),
    host: List[str] = option(["localhost", "127.0.0.1"], "--host", help="host name or IP the cert is for, repeatable",
                             shown="localhost and 127.0.0.1"),
    name: str = option("colearn", help="file name stem"),
    days: int = option(30, help="days the certificate is valid"),
) -> None:
    """Make a self-signed certificate and key for trying TLS out (not for production)."""
    from colearn.grpc.security import make_self_signed

    if days < 1:
        _fail(f"--days must be at least 1, got {days}")
    try:
        cert_path, key_path = make_self_signed(out, host, name=name, days=days)
    except (ValueError, ImportError, OSError) as exc:
        _fail(str(exc))
    console.print(f"wrote {cert_path} and {key_path} (self-signed for {', '.join(host)}, {days} days)",
                  highlight=False)


# settings that belong to the learner servers (each builds its own learner on its own data) or to other backends
SERVER_SIDE = ("learner", "learner_params", "task", "data_path", "partition", "alpha", "baseline")


def grpc_backend_options(learners: str, *, token_file: Optional[Path] = None, ca_cert: Optional[Path] = None,
                         client_cert: Optional[Path] = None, client_key: Optional[Path] = None,
                         timeout: Optional[float] = None, given: Optional[Dict[str, Any]] = None,
                         check: bool = True) -> Dict[str, Any]:
    """`colearn run --learners host:port,...` as a RunConfig's backend options (paths only, no secrets).

    ``given`` (the other settings from the command line) must not contradict the servers: ``--backend`` other
    than grpc, another ``--n-learners``, or a learner/data setting (the servers build their own) is refused.
    With ``check``, every server must answer before the run starts (:meth:`GrpcBackend.check_reachable`);
    what they report goes into the options as ``servers`` (so results.json records it), and ``given`` gets
    the learner and task the servers say they run.
    """
    from colearn.grpc.security import split_address

    addresses = [a.strip() for a in learners.split(",") if a.strip()]
    for address in addresses:
        split_address(address)
    if len(addresses) < 2:
        raise ValueError(f"--learners needs at least two host:port addresses, got {len(addresses)}")
    given = given if given is not None else {}
    if given.get("backend", "grpc") != "grpc":
        raise ValueError(f"--backend {given['backend']} contradicts --learners (learner servers: the grpc backend)")
    if given.get("n_learners", len(addresses)) != len(addresses):
        raise ValueError(f"--n-learners {given['n_learners']} contradicts --learners, which names "
                         f"{len(addresses)} servers")
    server_side = [key for key in SERVER_SIDE if key in given]
    if server_side:
        option = "-p" if server_side[0] == "learner_params" else "--" + server_side[0].replace("_", "-")
        raise ValueError(f"{option} does not apply with --learners: each server builds its own learner on its "
                         f"own data (set it on `colearn serve`)")
    options = {"addresses": addresses, "token_file": token_file, "ca_file": ca_cert, "cert_file": client_cert,
               "key_file": client_key, "timeout": timeout}
    options = {k: str(v) if isinstance(v, Path) else v for k, v in options.items() if v is not None}
    if check:
        from colearn.grpc.backend import GrpcBackend

        with GrpcBackend.from_options(**options) as probe:
            options["servers"] = probe.check_reachable(timeout=min(timeout or 10.0, 10.0))
        given.update(_what_servers_run(options["servers"]))
    return options


def _what_servers_run(servers: List[Dict[str, Any]]) -> Dict[str, str]:
    """The learner and task named servers report ("sgd on digits (iid), learner 0 of 5, ..."), when they agree;
    "remote" otherwise (an entry point, or servers that differ)."""
    import re

    pairs = {re.match(r"(\S+) on (\S+) \(", str(server.get("learner", ""))) for server in servers}
    named = {match.groups() for match in pairs if match is not None}
    if len(named) == 1 and None not in pairs:
        learner, task = named.pop()
        return {"learner": learner, "task": task}
    return {"learner": "remote", "task": "remote"}


def register(app: typer.Typer) -> None:
    """Add `serve` and `make-cert` to the `colearn` command."""
    app.command("serve")(serve)
    app.command("make-cert")(make_cert)

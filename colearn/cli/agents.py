"""`colearn deploy`, `colearn admit`, `colearn agent` and `colearn watch`: an experiment run by independent agents
on a chain (`admit`: the admitter lets a late joiner in, when the experiment allows late joining).

Registered on the main app by :func:`colearn.cli.ledger.register`. Keys come from a file or the environment,
never from the command line; RPC URLs and tokens are never written to any file. Nothing here imports web3 or
grpc until a command runs.
"""
from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, List, Optional

import typer

from colearn.cli.common import console, fail as _fail, parse_key_values

RPC_ENV = "COLEARN_LEDGER_RPC_URL"
KEY_ENV = "COLEARN_AGENT_KEY"


def _stop_flag(timeout: Optional[float]) -> Callable[[], bool]:
    """A stop() that turns true on SIGTERM/SIGINT or after ``timeout`` seconds."""
    done = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: done.set())
    ends = time.monotonic() + timeout if timeout else None
    return lambda: done.is_set() or (ends is not None and time.monotonic() > ends)


def _connect(rpc_url: Optional[str]) -> Any:
    from colearn.ledger.chain import rpc_chain

    if not rpc_url:
        raise ValueError(f"--rpc-url (or ${RPC_ENV}) is required: the JSON-RPC node this side uses")
    return rpc_chain(rpc_url)


def _key(key_file: Optional[Path]) -> Any:
    from colearn.ledger.chain import load_keys

    return load_keys(1, str(key_file) if key_file else None, KEY_ENV)[0]


def _open(experiment: str, chain: Any) -> Any:
    """The experiment file, or the contract address, given as EXPERIMENT; checked against the chain."""
    from colearn.ledger.experiment_file import ExperimentFile, experiment_at, open_experiment

    is_file = Path(experiment).is_file() or not experiment.startswith("0x")
    loaded = ExperimentFile.load(experiment) if is_file else experiment_at(chain, experiment)
    return loaded, open_experiment(chain, loaded)


def _peers(token_file: Optional[Path], ca_cert: Optional[Path], cert: Optional[Path] = None,
           key: Optional[Path] = None) -> Any:
    """Clients for the agents' peer services: TLS checked against ``ca_cert`` (with ``cert``/``key`` as this
    side's certificate for peers that require client certificates), the first token as the bearer token."""
    from colearn.grpc.security import ClientTLS, resolve_tokens
    from colearn.ledger.peer_service import PeerDirectory

    tokens = resolve_tokens(token_file)
    tls = ClientTLS(ca_file=str(ca_cert), cert_file=str(cert) if cert else None,
                    key_file=str(key) if key else None) if ca_cert else None
    return PeerDirectory(tls=tls, token=tokens[0] if tokens else None)


def deploy(
    learners: str = typer.Option(..., "--learners", help="the learners' addresses, comma-separated, in order"),
    out: Path = typer.Option(Path("experiment.json"), "--out", help="the experiment file to write"),
    rpc_url: Optional[str] = typer.Option(None, "--rpc-url", envvar=RPC_ENV, show_envvar=True),
    key_file: Optional[Path] = typer.Option(None, "--key-file", help=f"deployer's private key (default ${KEY_ENV})"),
    vote_threshold: float = typer.Option(0.5, "--vote-threshold", help="approving fraction of the valid votes"),
    quorum: float = typer.Option(0.5, "--quorum", help="fraction of the possible voters that must vote"),
    vote_period: int = typer.Option(20, "--vote-period", help="blocks from a proposal to its deadline"),
    propose_period: int = typer.Option(20, "--propose-period", help="blocks a proposer has before it may be skipped"),
    selector: str = typer.Option("round_robin", help="round_robin or random (keccak of seed and round)"),
    seed: int = typer.Option(0, help="experiment seed (selector; agents' default learner seed)"),
    max_learners: int = typer.Option(0, "--max-learners", help="allow late joining, up to this many learners in "
                                                               "all (default 0: the learner set is fixed)"),
    admitter: Optional[str] = typer.Option(None, "--admitter", help="with --max-learners: the address that admits "
                                                                    "late joiners (default: the deployer's)"),
) -> None:
    """Deploy an experiment's contract and write the experiment file agents and observers read."""
    from colearn.ledger.chain import LedgerError
    from colearn.ledger.experiment_file import deploy_experiment

    try:
        chain = _connect(rpc_url)
        addresses = [a.strip() for a in learners.split(",") if a.strip()]
        experiment = deploy_experiment(chain, _key(key_file), addresses, vote_threshold=vote_threshold,
                                       quorum=quorum, vote_period=vote_period, propose_period=propose_period,
                                       selector=selector, seed=seed, max_learners=max_learners, admitter=admitter)
        experiment.save(out)
    except ValueError as exc:
        message = str(exc).replace("max_learners", "--max-learners")  # name the options, not the parameters
        _fail("--" + message if message.startswith("admitter") else message)
    except (LedgerError, OSError) as exc:
        _fail(str(exc))
    joining = (f"; late joining allowed up to {experiment.max_learners} learners, admitted by {experiment.admitter}"
               if experiment.late_joining else "")
    console.print(f"deployed {experiment.contract} on chain {experiment.chain_id} (block {experiment.deploy_block}) "
                  f"for {len(experiment.learners)} learners{joining}; wrote {out}", highlight=False, soft_wrap=True)


def admit(
    experiment: str = typer.Argument(..., help="the experiment file `colearn deploy` wrote, or its contract address"),
    learner_address: str = typer.Option(..., "--learner", help="the address to admit as a learner"),
    rpc_url: Optional[str] = typer.Option(None, "--rpc-url", envvar=RPC_ENV, show_envvar=True),
    key_file: Optional[Path] = typer.Option(None, "--key-file",
                                            help=f"the admitter's private key (default ${KEY_ENV})"),
) -> None:
    """Admit a late joiner (the experiment's admitter only; it must allow late joining and have room)."""
    from colearn.ledger.chain import LedgerError
    from colearn.ledger.joining import admit as admit_learner

    try:
        chain = _connect(rpc_url)
        _, contract = _open(experiment, chain)
        index, first_round = admit_learner(chain, _key(key_file), contract, learner_address)
    except ValueError as exc:
        _fail(f"--{str(exc)}" if str(exc).startswith("learner ") else str(exc))
    except (LedgerError, OSError) as exc:
        _fail(str(exc))
    console.print(f"admitted {learner_address} as learner {index}: it votes and proposes from round {first_round}",
                  highlight=False, soft_wrap=True)


def _learner(experiment: Any, index: int, learner: Optional[str], task: Optional[str], seed: Optional[int],
             learner_param: List[str], entry_point: Optional[str], params: Optional[str]) -> Any:
    """The learner spec: a named learner (data split as `colearn run` splits it) or module:function."""
    from colearn.grpc.factory import LearnerSpec, parse_json_params

    if entry_point:
        if learner or learner_param:
            raise ValueError("--entry-point builds its own learner: drop --learner/--learner-param")
        return LearnerSpec(entry_point=entry_point, params=parse_json_params(params, "--params"))
    from colearn.run_config import RunConfig

    # one shard per learner the experiment can have (late joiners included), as `colearn run` splits the data
    settings = {"learner": learner or "sgd", "task": task or "digits", "n_learners": experiment.capacity,
                "seed": experiment.seed if seed is None else seed}
    if learner_param:
        settings["learner_params"] = parse_key_values(learner_param)
    return LearnerSpec(run_config=RunConfig(**settings), index=index)


def agent(
    experiment: str = typer.Argument(..., help="the experiment file `colearn deploy` wrote, or its contract address"),
    rpc_url: Optional[str] = typer.Option(None, "--rpc-url", envvar=RPC_ENV, show_envvar=True),
    key_file: Optional[Path] = typer.Option(None, "--key-file",
                                            help=f"this learner's private key (default ${KEY_ENV})"),
    learner: Optional[str] = typer.Option(None, help="registered learner (default sgd), on --task split as `run` does"),
    task: Optional[str] = typer.Option(None, help="data loader for a named learner (default digits)"),
    seed: Optional[int] = typer.Option(None, help="learner/split seed (default: the experiment's)"),
    learner_param: List[str] = typer.Option([], "--learner-param", "-p", help="learner setting KEY=VALUE"),
    entry_point: Optional[str] = typer.Option(None, "--entry-point", help="module:function that returns an MLI"),
    params: Optional[str] = typer.Option(None, "--params", help="JSON keyword arguments for --entry-point"),
    workdir: Optional[Path] = typer.Option(None, "--workdir", help="blobs and signed votes (default ./agent-<index>)"),
    host: str = typer.Option("127.0.0.1", help="address the peer service binds; off loopback TLS is required"),
    port: int = typer.Option(0, help="peer service port (0: any free port)"),
    advertise: Optional[str] = typer.Option(None, help="host:port peers should use (default: the bound address)"),
    tls_cert: Optional[Path] = typer.Option(None, "--tls-cert", help="TLS certificate of the peer service"),
    tls_key: Optional[Path] = typer.Option(None, "--tls-key", help="its private key"),
    client_ca: Optional[Path] = typer.Option(None, "--client-ca", help="require peers' client certs from this CA"),
    ca_cert: Optional[Path] = typer.Option(None, "--ca-cert", help="CA to check the other agents' TLS against"),
    token_file: Optional[Path] = typer.Option(None, "--token-file",
                                              help="experiment token(s) (default $COLEARN_TOKEN)"),
    fetch_patience: float = typer.Option(10.0, "--fetch-patience", help="seconds to retry a blob before rejecting"),
    publish_scores: bool = typer.Option(True, "--publish-scores/--private-scores",
                                        help="serve this learner's scores of each proposal to observers"),
    rounds: Optional[int] = typer.Option(None, "--rounds", help="stop acting once this many rounds have closed"),
    linger: float = typer.Option(0.0, "--linger", help="then keep serving peers and observers this many seconds"),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="stop after this many seconds"),
    poll: float = typer.Option(0.2, "--poll", help="seconds between looks at the chain"),
    join: bool = typer.Option(False, "--join", help="not a learner yet: wait to be admitted (the experiment must "
                                                    "allow late joining), then join holding the latest model"),
    join_timeout: float = typer.Option(600.0, "--join-timeout", help="with --join: seconds to wait for admission"),
) -> None:
    """Run one learner as an autonomous agent of an on-chain experiment (no driver)."""
    from pydantic import ValidationError

    from colearn.grpc.security import ServerTLS, resolve_tokens
    from colearn.ledger.agent_node import ChainAgent
    from colearn.ledger.chain import LedgerError
    from colearn.ledger.joining import await_admission

    stop = _stop_flag(timeout)
    try:
        chain = _connect(rpc_url)
        account = _key(key_file)
        loaded, contract = _open(experiment, chain)
        index = await_admission(contract, account.address, join=join, timeout=join_timeout, poll=max(poll, 0.5),
                                stop=stop, log=lambda line: print(f"[agent] {line}", flush=True))
        mli = _learner(loaded, index, learner, task, seed, learner_param, entry_point, params).build()
        if (tls_cert is None) != (tls_key is None):
            raise ValueError("--tls-cert and --tls-key go together")
        tls = ServerTLS(str(tls_cert), str(tls_key), str(client_ca) if client_ca else None) if tls_cert else None
        serve = {"host": host, "port": port, "tls": tls, "tokens": resolve_tokens(token_file)}
        node = ChainAgent(mli, account, chain, contract, workdir or Path(f"agent-{index}"),
                          deploy_block=loaded.deploy_block, peers=_peers(token_file, ca_cert, tls_cert, tls_key),
                          serve=serve,
                          advertise=advertise, fetch_patience=fetch_patience, publish_scores=publish_scores,
                          log=lambda line: print(f"[agent {index}] {line}", flush=True))
    except ValidationError as exc:
        _fail("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))
    except (LedgerError, ValueError, ImportError, OSError) as exc:
        _fail(str(exc))
    console.print(f"agent {index} ({account.address}) serving peers on {node.advertise}", highlight=False,
                  soft_wrap=True)
    sys.stdout.flush()
    done = (lambda: stop() or node.finished(rounds)) if rounds else stop
    try:
        node.run(done, poll_seconds=poll)
        ends = time.monotonic() + linger
        while not stop() and time.monotonic() < ends:  # blobs and scores stay available to late readers
            time.sleep(0.1)
    finally:
        node.close()
    console.print(f"agent {index} stopped: {node.stats.proposed} proposed, {node.stats.voted} voted, "
                  f"{node.stats.finalized} finalized, {node.stats.adopted} adopted, {node.stats.gas} gas, "
                  f"{node.server.servicer.bytes_sent} bytes served, {node.peers.bytes_received} fetched; "
                  f"holding model {node.held}", highlight=False, soft_wrap=True)


def watch(
    experiment: str = typer.Argument(..., help="the experiment file `colearn deploy` wrote, or its contract address"),
    out: Path = typer.Option(Path("colearn-watch"), "--out", help="results.json, results.csv, rounds.jsonl, plots"),
    rpc_url: Optional[str] = typer.Option(None, "--rpc-url", envvar=RPC_ENV, show_envvar=True),
    rounds: Optional[int] = typer.Option(None, "--rounds", help="stop once this many rounds have closed"),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="stop after this many seconds"),
    ca_cert: Optional[Path] = typer.Option(None, "--ca-cert", help="CA to check the agents' TLS against"),
    token_file: Optional[Path] = typer.Option(None, "--token-file", help="token for the agents' peer services"),
    plots: bool = typer.Option(True, "--plots/--no-plots"),
) -> None:
    """Follow an on-chain experiment as an observer and keep its results files up to date."""
    from colearn.ledger.chain import LedgerError
    from colearn.ledger.observer import Observer

    try:
        chain = _connect(rpc_url)
        loaded, contract = _open(experiment, chain)
        observer = Observer(chain, contract, loaded, out, peers=_peers(token_file, ca_cert), plots=plots)
    except (LedgerError, ValueError, OSError) as exc:
        _fail(str(exc))
    console.print(f"watching {loaded.contract} on chain {loaded.chain_id}; writing {out}", highlight=False,
                  soft_wrap=True)
    sys.stdout.flush()
    results = observer.follow(_stop_flag(timeout), until_rounds=rounds)
    console.print(f"{len(results.rounds)} rounds closed, {results.n_accepted} accepted; wrote {out}",
                  highlight=False)


def register(app: typer.Typer) -> None:
    """Add `deploy`, `admit`, `agent` and `watch` to ``app``."""
    known = {info.name for info in app.registered_commands}
    for name, command in (("deploy", deploy), ("admit", admit), ("agent", agent), ("watch", watch)):
        if name not in known:
            app.command(name)(command)


__all__ = ["admit", "agent", "deploy", "register", "watch"]

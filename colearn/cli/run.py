"""`colearn run`: run an experiment from options or a config file, write results and plots, resume a stopped run."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import typer
from pydantic import ValidationError

from colearn.cli.common import (CliError, console, error_message, fail as _fail, parse_key_values,
                                validation_message)

OUT_DEFAULT = Path("colearn-out")


def run(
    task: Optional[str] = typer.Option(None, help="digits, breast_cancer, iris, wine, or csv/npz with --data-path (default digits)"),
    learner: Optional[str] = typer.Option(None, help="learner name, see `colearn learners` (default sgd)"),
    n_learners: Optional[int] = typer.Option(None, "--n-learners", help="number of learners (default 5)"),
    n_rounds: Optional[int] = typer.Option(None, "--n-rounds", help="number of rounds (default 20)"),
    vote_threshold: Optional[float] = typer.Option(None, "--vote-threshold", help="approving fraction needed (default 0.5)"),
    partition: Optional[str] = typer.Option(None, help="iid, dirichlet or shards (default iid)"),
    alpha: Optional[float] = typer.Option(None, help="Dirichlet concentration for --partition dirichlet (default 0.5)"),
    seed: Optional[int] = typer.Option(None, help="seed for splits, learners and proposer selection (default 0)"),
    selector: Optional[str] = typer.Option(None, help="proposer selection: round_robin or random (default round_robin)"),
    strategy: Optional[str] = typer.Option(None, help="how rounds are decided: threshold, excluding or suspending "
                                                      "(default threshold; see docs/robustness.md)"),
    backend: Optional[str] = typer.Option(None, help="where learners run: local, processes, ray or ledger (default local)"),
    timeout: Optional[float] = typer.Option(None, help="per-call timeout in seconds (processes and ray backends)"),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="existing Ray cluster (ray backend)"),
    data_path: Optional[Path] = typer.Option(None, "--data-path", help="local CSV or .npz file for --task csv/npz"),
    learner_param: List[str] = typer.Option([], "--learner-param", "-p", metavar="KEY=VALUE",
                                            help="learner setting KEY=VALUE (repeatable)"),
    baseline: Optional[bool] = typer.Option(None, "--baseline/--no-baseline",
                                            help="also train each learner alone on its own share and compare"),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML or TOML file with the same keys"),
    out: Path = typer.Option(OUT_DEFAULT, "--out", show_default=False,
                             help="directory for results.json, results.csv and plots (default colearn-out)"),
    plots: bool = typer.Option(True, "--plots/--no-plots", show_default=False,
                               help="write score and vote-history plots (default --plots)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no per-round lines"),
    learners: Optional[str] = typer.Option(None, "--learners", help="remote learner servers host:port,... (see `colearn serve`)"),
    token_file: Optional[Path] = typer.Option(None, "--token-file", help="token(s) for --learners, one per line (default $COLEARN_TOKEN)"),
    ca_cert: Optional[Path] = typer.Option(None, "--ca-cert", help="certificate/CA to check --learners' TLS against"),
    client_cert: Optional[Path] = typer.Option(None, "--client-cert", help="client certificate for mutual TLS"),
    client_key: Optional[Path] = typer.Option(None, "--client-key", help="client key for mutual TLS"),
    resume: Optional[Path] = typer.Option(None, "--resume", help="continue the interrupted run in this --out "
                                                                 "directory (same settings; none need repeating)"),
) -> None:
    """Run a collective-learning experiment and write results and plots to --out."""
    from colearn.run_config import RunConfig, load_config_file

    given = {"task": task, "learner": learner, "n_learners": n_learners, "n_rounds": n_rounds,
             "vote_threshold": vote_threshold, "partition": partition, "alpha": alpha, "seed": seed,
             "selector": selector, "strategy": strategy, "backend": backend, "baseline": baseline,
             "data_path": str(data_path) if data_path else None}
    overrides: Dict[str, Any] = {key: value for key, value in given.items() if value is not None}
    try:
        if learner_param:
            overrides["learner_params"] = parse_key_values(learner_param)
        backend_options = {k: v for k, v in {"timeout": timeout, "address": ray_address}.items() if v is not None}
        if backend_options:
            overrides["backend_options"] = backend_options
        if learners:  # the grpc backend: learners run elsewhere, behind `colearn serve`
            from colearn.cli.serve import grpc_backend_options

            overrides["backend_options"] = grpc_backend_options(learners, token_file=token_file, ca_cert=ca_cert,
                                                                client_cert=client_cert, client_key=client_key,
                                                                timeout=timeout, given=overrides)
            overrides.update(backend="grpc", n_learners=len(overrides["backend_options"]["addresses"]))
        if config is not None:
            if not config.is_file():
                raise CliError(f"--config: no such file {config}")
            run_config = load_config_file(config, overrides)
        else:
            run_config = RunConfig(**overrides)
        if resume is not None:
            run_config, out = _resumed_config(resume, out, run_config, overrides, config is not None)
    except ValidationError as exc:
        _fail(validation_message(exc))
    except (CliError, ValueError, OSError) as exc:
        _fail(f"--config {config}: {exc}" if config is not None and not isinstance(exc, CliError) else str(exc))
    _run_and_report(run_config, out, plots, quiet, resume=resume is not None)


def _resumed_config(resume: Path, out: Path, given: Any, overrides: Dict[str, Any], from_file: bool) -> Any:
    """The interrupted run's configuration; settings given again must be the same (else a CliError)."""
    from colearn.resume import contradictions, journal_config
    from colearn.run_config import RunConfig

    if out != OUT_DEFAULT and out.resolve() != resume.resolve():
        raise CliError(f"--out {out}: a resumed run writes to its own directory, --resume {resume}")
    original = RunConfig(**journal_config(resume))
    if original.backend not in ("local", "processes", "ray"):
        raise CliError(f"--resume: runs on the {original.backend} backend cannot be resumed "
                       "(local, processes and ray can)")
    compared = given.model_dump(mode="json") if from_file else RunConfig(**overrides).model_dump(
        mode="json", include=set(overrides))
    problems = contradictions(original.model_dump(mode="json"), compared)
    if problems:
        raise CliError("--resume: settings contradict the interrupted run: " + "; ".join(problems))
    return original, resume


def _run_and_report(run_config: Any, out: Path, plots: bool, quiet: bool, resume: bool = False) -> None:
    from colearn.backends.processes import BackendStartError
    from colearn.progress import RichProgress, plural, summary_table
    from colearn.runner import run as run_experiment

    console.print(f"colearn: {run_config.n_learners} x {run_config.learner} learners on {run_config.task} "
                  f"({run_config.partition}), {plural(run_config.n_rounds, 'round')}, backend {run_config.backend}, "
                  f"seed {run_config.seed}", highlight=False)
    try:
        hooks, prepare = _journal_hooks(out, resume)
        hooks += [] if quiet else [RichProgress(run_config.n_rounds, console)]
        results = run_experiment(run_config, hooks=hooks, prepare=prepare)
    except (ImportError, ValueError, OSError, BackendStartError) as exc:
        _fail(error_message(exc))
    baseline = results.extra.get("baseline_alone")
    console.print(summary_table(results, baseline))
    out.mkdir(parents=True, exist_ok=True)
    written = [results.save(out / "results.json")]
    written.append(out / "results.csv")
    results.to_csv(written[-1])
    if plots:
        from colearn.plot import save_plots

        written += save_plots(results, out)
    console.print("wrote " + ", ".join(str(p) for p in written), highlight=False)


def _journal_hooks(out: Path, resume: bool) -> Tuple[List[Any], Optional[Callable[[Any], None]]]:
    """The round journal and the accepted-weights store (what --resume needs), and the restore step if resuming."""
    from colearn.journal import RoundJournal, read_journal
    from colearn.resume import AcceptedWeights, AppendingJournal, restore

    keeper = AcceptedWeights(out, resumed=resume)
    if not resume:
        return [RoundJournal(out), keeper], None
    so_far = read_journal(out)
    console.print(f"resuming at round {len(so_far.rounds)}", highlight=False)  # rounds are numbered from 0

    def prepare(experiment: Any) -> None:
        keeper.held = restore(experiment, so_far, out)

    return [AppendingJournal(out, so_far), keeper], prepare


def register(app: typer.Typer) -> None:
    """Add `colearn run` to ``app`` (the ledger and dashboard modules then add their options to it)."""
    app.command()(run)

"""The `colearn` command: run experiments, redraw plots, list learners and tasks."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import typer
from pydantic import ValidationError
from rich.markup import escape

from colearn.cli_common import (CliError, console, error_message, errors, fail as _fail, parse_key_values,
                                 quiet_frameworks)

app = typer.Typer(help="colearn: decentralized collective learning. Learners train one shared model without "
                       "pooling their data; each round one proposes, the others vote.",
                  add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False)


def _validation_message(exc: ValidationError, dashes: bool = True) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{where.replace('_', '-') if dashes else where}: {message}" if where else message)
    return "; ".join(parts[:3]) + (f" (and {len(parts) - 3} more)" if len(parts) > 3 else "")


OUT_DEFAULT = Path("colearn-out")


@app.command()
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
    from colearn.runner import RunConfig, load_config_file

    given = {"task": task, "learner": learner, "n_learners": n_learners, "n_rounds": n_rounds,
             "vote_threshold": vote_threshold, "partition": partition, "alpha": alpha, "seed": seed,
             "selector": selector, "backend": backend, "baseline": baseline,
             "data_path": str(data_path) if data_path else None}
    overrides: Dict[str, Any] = {key: value for key, value in given.items() if value is not None}
    try:
        if learner_param:
            overrides["learner_params"] = parse_key_values(learner_param)
        backend_options = {k: v for k, v in {"timeout": timeout, "address": ray_address}.items() if v is not None}
        if backend_options:
            overrides["backend_options"] = backend_options
        if learners:  # the grpc backend: learners run elsewhere, behind `colearn serve`
            from colearn.cli_grpc import grpc_backend_options

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
        _fail(_validation_message(exc))
    except (CliError, ValueError, OSError) as exc:
        _fail(f"--config {config}: {exc}" if config is not None and not isinstance(exc, CliError) else str(exc))
    _run_and_report(run_config, out, plots, quiet, resume=resume is not None)


def _resumed_config(resume: Path, out: Path, given: Any, overrides: Dict[str, Any], from_file: bool) -> Any:
    """The interrupted run's configuration; settings given again must be the same (else a CliError)."""
    from colearn.resume import contradictions, journal_config
    from colearn.runner import RunConfig

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


@app.command()
def plot(
    results_file: Path = typer.Argument(..., help="a results.json written by `colearn run`"),
    out: Optional[Path] = typer.Option(None, "--out", help="directory for the plots (default: beside the file)"),
    fmt: List[str] = typer.Option(["png"], "--format", help="png and/or svg (repeatable)"),
) -> None:
    """Redraw the score and vote-history plots from a results file."""
    from colearn.results import ExperimentResults

    if not results_file.is_file():
        _fail(f"RESULTS_FILE: no such file {results_file}")
    bad = [f for f in fmt if f not in ("png", "svg")]
    if bad:
        _fail(f"--format: {bad[0]!r} is not png or svg")
    try:
        results = ExperimentResults.load(results_file)
    except ValidationError as exc:
        _fail(f"{results_file} is not a colearn results file: {_validation_message(exc, dashes=False)}")
    except (ValueError, OSError) as exc:
        _fail(f"{results_file} is not a colearn results file: {exc}")
    from colearn.plot import save_plots  # after the file is validated: a bad file fails fast

    written = save_plots(results, out or results_file.parent, formats=tuple(fmt))
    console.print("wrote " + ", ".join(str(p) for p in written), highlight=False)


@app.command()
def learners() -> None:
    """List the learners `colearn run --learner` accepts and the extra each needs."""
    from colearn.registry import LEARNERS

    for spec in LEARNERS.values():
        console.print(escape(f"{spec.name:<15} {'[' + spec.extra + ']':<10} {spec.description}"), highlight=False,
                      soft_wrap=True)


@app.command()
def tasks() -> None:
    """List the embedded tasks (shipped with scikit-learn, no download)."""
    from colearn.data.tasks import TASKS

    for name in TASKS:
        console.print(name)


@app.command()
def version() -> None:
    """Print the versions of colearn, Python and the frameworks installed."""
    from colearn.results import collect_versions

    for name, value in collect_versions().items():
        console.print(f"{name}: {value}", highlight=False)


from colearn.cli_grpc import register as _register_grpc  # noqa: E402  (serve, make-cert)
_register_grpc(app)
from colearn.cli_ledger import register as _register_ledger  # noqa: E402  (audit; run --rpc-url/--keys-file)
_register_ledger(app)
from colearn.cli_dashboard import register as _register_dashboard  # noqa: E402  (dashboard; run --dashboard)
_register_dashboard(app)


def _print_version(value: bool) -> None:
    if value:
        from colearn import __version__

        console.print(f"colearn {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _options(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                          help="print colearn's version and exit")) -> None:
    """colearn: decentralized collective learning."""


def main() -> None:
    """Entry point of the `colearn` script: frameworks kept quiet, a missing extra as one line."""
    quiet_frameworks()
    try:
        app()
    except ImportError as exc:  # any command, e.g. `colearn audit` without the ledger extra
        errors.print(f"[red]error:[/] {escape(error_message(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    sys.exit(main())

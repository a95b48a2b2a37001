"""`colearn learners`, `tasks` and `version`: what this installation offers."""
from __future__ import annotations

import typer
from rich.markup import escape

from colearn.cli.common import console

def learners() -> None:
    """List the learners `colearn run --learner` accepts and the extra each needs."""
    from colearn.registry import LEARNERS

    for spec in LEARNERS.values():
        console.print(escape(f"{spec.name:<15} {'[' + spec.extra + ']':<10} {spec.description}"), highlight=False,
                      soft_wrap=True)


def tasks() -> None:
    """List the embedded tasks (shipped with scikit-learn, no download)."""
    from colearn.data.tasks import TASKS

    for name in TASKS:
        console.print(name)


def version() -> None:
    """Print the versions of colearn, Python and the frameworks installed."""
    from colearn.results import collect_versions

    for name, value in collect_versions().items():
        console.print(f"{name}: {value}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add `colearn learners`, `tasks` and `version` to ``app``."""
    for command in (learners, tasks, version):
        app.command()(command)

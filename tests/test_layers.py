"""The package's layers: no lower layer imports a higher one, and ``import colearn`` stays light.

The import graph is read from the source with ``ast`` (module-level and function-level imports alike), so a
lazy import inside a function counts as much as one at the top of a module.
"""
import ast
import subprocess
import sys
from pathlib import Path
from typing import Dict, Set

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "colearn"

# what sits below the run driver and the CLI: the protocol, the experiment, the run configuration,
# the backends (in-process, processes, Ray, gRPC, ledger)
LOWER = ("colearn.backends", "colearn.grpc", "colearn.ledger", "colearn.protocol", "colearn.experiment",
         "colearn.run_config", "colearn.baseline", "colearn.vote_rules", "colearn.strategies")
HIGHER = ("colearn.cli", "colearn.runner")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path) -> Set[str]:
    """Every ``colearn`` module ``path`` imports, wherever the import statement is (relative ones resolved)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: Set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            found.add(source)
            found.update(f"{source}.{alias.name}" for alias in node.names)  # `from colearn import cli`
    return {m for m in found if m == "colearn" or m.startswith("colearn.")}


def import_graph() -> Dict[str, Set[str]]:
    return {module_name(path): imported_modules(path) for path in sorted(PACKAGE.rglob("*.py"))}


def within(module: str, prefixes: tuple) -> bool:
    return any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes)


def test_the_graph_is_read_from_the_source():
    graph = import_graph()
    assert "colearn.cli" in graph and "colearn.cli.run" in graph and "colearn.run_config" in graph
    assert "colearn.runner" in graph["colearn.cli.run"]  # a function-level import is found
    assert "colearn.run_config" in graph["colearn.ledger.runner"]


@pytest.mark.parametrize("layer", LOWER)
def test_a_lower_layer_never_imports_the_driver_or_the_cli(layer):
    graph = import_graph()
    modules = [m for m in graph if within(m, (layer,))]
    assert modules, layer
    upward = {m: sorted(i for i in graph[m] if within(i, HIGHER)) for m in modules}
    assert not {m: i for m, i in upward.items() if i}


def test_the_run_configuration_builds_no_backend():
    """It only asks the backends which options they take (the backend's own signature is the truth)."""
    imports = import_graph()["colearn.run_config"]
    assert {m for m in imports if within(m, ("colearn.backends", "colearn.grpc", "colearn.ledger"))} == \
        {"colearn.backends.options", "colearn.backends.options.check_backend_options"}


def test_only_the_cli_imports_the_cli():
    graph = import_graph()
    outside = {m: sorted(i for i in imports if within(i, ("colearn.cli",)))
               for m, imports in graph.items() if not within(m, ("colearn.cli",))}
    assert not {m: i for m, i in outside.items() if i}


def module_level_graph() -> Dict[str, Set[str]]:
    """The ``colearn`` modules each module imports at its top level (what runs while it is being imported)."""
    graph: Dict[str, Set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        top = ast.Module(body=[n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))],
                         type_ignores=[])
        name = module_name(path)
        graph[name] = set()
        for node in ast.walk(top):
            if isinstance(node, ast.ImportFrom) and not node.level and node.module:
                graph[name].add(node.module)
                graph[name].update(f"{node.module}.{alias.name}" for alias in node.names)  # submodules
            elif isinstance(node, ast.Import):
                graph[name].update(alias.name for alias in node.names)
    return {m: {i for i in imports if i in graph and i != m} for m, imports in graph.items()}


def test_no_import_cycles_at_module_level():
    """Module-level imports form no cycle (function-level ones may point back up: they run later)."""
    graph = module_level_graph()
    assert {"colearn.backends", "colearn.experiment"} <= graph["colearn"]
    assert {"colearn.cli.run", "colearn.cli.common"} <= graph["colearn.cli"]
    done: Set[str] = set()

    def visit(module: str, path: list) -> None:
        if module in path:
            raise AssertionError(" -> ".join(path[path.index(module):] + [module]))
        if module in done:
            return
        for imported in sorted(graph[module]):
            visit(imported, path + [module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])


def test_import_colearn_imports_no_framework():
    code = ("import sys, colearn; heavy = {'torch', 'tensorflow', 'ray'} & set(sys.modules); "
            "assert not heavy, heavy")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr

"""Compile the contract with the pinned Vyper and keep the result as a committed JSON artifact.

Running colearn needs only the artifact (ABI and bytecode), not the compiler. Regenerate it after editing
``contracts/Colearn.vy`` with ``python -m colearn.ledger.compile`` (needs ``vyper==VYPER_VERSION``);
``--check`` exits non-zero when the artifact does not match the source.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict

VYPER_VERSION = "0.4.3"
EVM_VERSION = "shanghai"  # accepted by py-evm, ganache 7.9, hardhat and anvil
HERE = Path(__file__).parent
SOURCE = HERE / "contracts" / "Colearn.vy"
ARTIFACT = HERE / "artifacts" / "Colearn.json"


class ArtifactError(RuntimeError):
    """The compiled artifact is missing or does not match the contract source."""


def source_digest(path: Path = SOURCE) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def compile_contract(path: Path = SOURCE) -> Dict[str, Any]:
    """Compile ``path`` with the pinned Vyper; returns the artifact dict (abi, bytecode, versions, digest)."""
    try:
        import vyper
        from vyper.compiler import compile_code
        from vyper.compiler.settings import Settings
    except ImportError as exc:
        raise ArtifactError(f"compiling the contract needs vyper=={VYPER_VERSION}: pip install "
                            f"'vyper=={VYPER_VERSION}'") from exc
    if vyper.__version__.split("+")[0] != VYPER_VERSION:
        raise ArtifactError(f"vyper {vyper.__version__} is installed; the contract is pinned to {VYPER_VERSION}")
    out = compile_code(path.read_text(), output_formats=["abi", "bytecode", "bytecode_runtime"],
                       settings=Settings(evm_version=EVM_VERSION))
    return {"contract": "Colearn", "compiler": f"vyper-{VYPER_VERSION}", "evm_version": EVM_VERSION,
            "source": str(path.relative_to(HERE)), "source_sha256": source_digest(path), "abi": out["abi"],
            "bytecode": out["bytecode"], "bytecode_runtime": out["bytecode_runtime"]}


@lru_cache(maxsize=1)
def load_artifact() -> Dict[str, Any]:
    """The committed artifact; refuses one that was compiled from another version of the source."""
    if not ARTIFACT.is_file():
        raise ArtifactError(f"{ARTIFACT} is missing: run python -m colearn.ledger.compile")
    artifact = json.loads(ARTIFACT.read_text())
    if SOURCE.is_file() and artifact.get("source_sha256") != source_digest():
        raise ArtifactError(f"{ARTIFACT.name} was compiled from another version of {SOURCE.name}: "
                            "run python -m colearn.ledger.compile")
    return artifact


def main(argv: Any = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="only check that the artifact matches the source")
    args = parser.parse_args(argv)
    fresh = compile_contract()
    if args.check:
        current = json.loads(ARTIFACT.read_text()) if ARTIFACT.is_file() else {}
        same = all(current.get(k) == fresh[k] for k in ("abi", "bytecode", "source_sha256", "compiler"))
        print("artifact matches the source" if same else "artifact is stale: run python -m colearn.ledger.compile")
        return 0 if same else 1
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    ARTIFACT.write_text(json.dumps(fresh, indent=1) + "\n")
    print(f"wrote {ARTIFACT} ({len(fresh['bytecode']) // 2 - 1} bytes of bytecode, {fresh['compiler']}, "
          f"evm {EVM_VERSION})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Gas and wall time of the ledger backend vs the in-process backend, on the digits task.

    python bench/ledger_gas.py            # N = 5 and 20 learners, 4 rounds each
    python bench/ledger_gas.py --quick    # N = 5 and 20, 2 rounds
    python bench/ledger_gas.py --no-node  # embedded chain only

Prints a table and writes bench/results/ledger_gas.json. Gas is exact and reproducible; wall times depend on the
machine and its load. A real node (ganache 7) is used when one is found at $COLEARN_GANACHE or
~/.cache/colearn-node/node_modules/.bin/ganache (``npm install --prefix ~/.cache/colearn-node ganache@7.9.2``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional

from colearn.ledger.localnode import find_ganache, local_ganache
from colearn.runner import RunConfig, run

RESULTS = Path(__file__).parent / "results"


def per_round_seconds(results: Any) -> float:
    return statistics.fmean(r.times.total for r in results.rounds)


def gas_summary(results: Any) -> Dict[str, Any]:
    ledger = results.extra["ledger"]
    by_kind: Dict[str, List[int]] = {}
    for entry in ledger["rounds"]:
        for tx in entry["txs"]:
            by_kind.setdefault(tx["kind"], []).append(tx["gas"])
    return {"deploy": ledger["deployment"]["gas"],
            "per_round": [entry["gas"] for entry in ledger["rounds"]],
            "mean_per_round": statistics.fmean(entry["gas"] for entry in ledger["rounds"]),
            "per_tx": {kind: {"mean": statistics.fmean(g), "min": min(g), "max": max(g), "count": len(g)}
                       for kind, g in sorted(by_kind.items())}}


def measure(n: int, rounds: int, learner: str, node: Optional[str]) -> Dict[str, Any]:
    base = dict(task="digits", learner=learner, n_learners=n, n_rounds=rounds, seed=0)
    row: Dict[str, Any] = {"n_learners": n, "rounds": rounds}
    local = run(RunConfig(**base))
    row["local_s_per_round"] = per_round_seconds(local)
    with tempfile.TemporaryDirectory() as tmp:
        embedded = run(RunConfig(**base, backend="ledger", backend_options={"workdir": tmp}))
    row["embedded_s_per_round"] = per_round_seconds(embedded)
    row["gas"] = gas_summary(embedded)
    row["accepted"] = embedded.n_accepted
    if node is not None:
        with local_ganache(node, n, "colearn-bench") as (url, keys_file), tempfile.TemporaryDirectory() as tmp:
            options = {"rpc_url": url, "keys_file": str(keys_file), "workdir": tmp}
            on_node = run(RunConfig(**base, backend="ledger", backend_options=options))
        row["node_s_per_round"] = per_round_seconds(on_node)
        row["node_gas_per_round"] = gas_summary(on_node)["mean_per_round"]
    return row


def print_table(rows: List[Dict[str, Any]]) -> None:
    print(f"{'N':>3} {'gas/round':>10} {'deploy':>9} {'propose':>8} {'finalize':>9} "
          f"{'local s/rd':>10} {'py-evm s/rd':>11} {'ganache s/rd':>12}")
    for row in rows:
        tx = row["gas"]["per_tx"]
        node = f"{row['node_s_per_round']:.3f}" if "node_s_per_round" in row else "-"
        print(f"{row['n_learners']:>3} {row['gas']['mean_per_round']:>10.0f} {row['gas']['deploy']:>9} "
              f"{tx.get('propose', {}).get('mean', 0):>8.0f} {tx.get('finalize', {}).get('mean', 0):>9.0f} {row['local_s_per_round']:>10.3f} "
              f"{row['embedded_s_per_round']:>11.3f} {node:>12}")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 rounds per size")
    parser.add_argument("--sizes", type=int, nargs="+", default=[5, 20])
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--learner", default="sgd")
    parser.add_argument("--no-node", action="store_true", help="skip the ganache node even if one is installed")
    parser.add_argument("--out", type=Path, default=RESULTS / "ledger_gas.json")
    args = parser.parse_args(argv)
    rounds = args.rounds or (2 if args.quick else 4)
    node = None if args.no_node else find_ganache()
    if node is None and not args.no_node:
        print("no ganache found: measuring the embedded chain only", file=sys.stderr)
    rows = [measure(n, rounds, args.learner, node) for n in args.sizes]
    print_table(rows)
    if len(rows) >= 2:
        low, high = rows[0], rows[-1]
        extra = (high["gas"]["mean_per_round"] - low["gas"]["mean_per_round"]) / (high["n_learners"] - low["n_learners"])
        print(f"gas per extra voter: {extra:.0f}")
    report = {"benchmark": "ledger_gas", "task": "digits", "learner": args.learner, "quick": args.quick,
              "node": "ganache" if node else None, "machine": {"python": platform.python_version(),
                                                             "cpus": os.cpu_count()},
              "gas_per_extra_voter": (rows[-1]["gas"]["mean_per_round"] - rows[0]["gas"]["mean_per_round"])
              / (rows[-1]["n_learners"] - rows[0]["n_learners"]) if len(rows) >= 2 else None,
              "note": "votes are EIP-712 signatures checked in finalize; wall times are per round (propose, vote, accept), from RoundRecord.times.total", "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

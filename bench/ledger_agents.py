"""Independent `colearn agent` processes on one machine: round time, gas per round, bytes moved per round.

    python -m bench.ledger_agents              # N = 5 and 20 agents, 6 rounds each, ganache mining every 0.5 s
    python -m bench.ledger_agents --quick      # N = 5 and 20, 3 rounds
    python -m bench.ledger_agents --sizes 5 --rounds 10 --block-time 1

Each size: a ganache node on 127.0.0.1, `colearn deploy`, N `colearn agent` processes (sgd on digits, each with
its own key file) and nothing else. Round time is the wall time between consecutive rounds closing (seen by
polling the chain every 50 ms; the first round, which includes the agents' start-up, is left out). Gas is the sum
of every round transaction's gas (propose, finalize, skips). Bytes moved are what the agents' peer services served
(blobs: each voter fetches the proposal once), from each agent's final report. Prints a table, writes
bench/results/ledger_agents.json (``-quick`` with --quick). Needs ganache (see colearn.ledger.localnode).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from colearn.ledger.localnode import INSTALL_HINT, find_ganache, local_ganache
from tests.agent_helpers import ChainView, agents, deploy, split_keys

RESULTS = Path(__file__).resolve().parent / "results"
SERVED = re.compile(r"(\d+) gas, (\d+) bytes served, (\d+) fetched")


def measure(binary: str, n: int, rounds: int, block_time: float) -> Dict[str, Any]:
    with local_ganache(binary, n, f"colearn-bench-agents-{n}", block_time=block_time) as (url, keys_file), \
            tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        keys = split_keys(keys_file, root / "keys", n)
        experiment = root / "experiment.json"
        deploy(url, keys, experiment, "--propose-period", str(int(120 / block_time)),
               "--vote-period", str(int(60 / block_time)))
        view = ChainView(url, experiment)
        closed_at: List[float] = []
        with agents(url, experiment, keys, root, "--rounds", str(rounds), "--linger", "5",
                    "--timeout", str(60 + rounds * 30 + n * 5)) as group:
            for i in range(n):
                group.start(i)
            seen = 0
            ends = time.monotonic() + 60 + rounds * 30 + n * 5
            while seen < rounds and time.monotonic() < ends:
                current = view.current_round()
                closed_at += [time.monotonic()] * (current - seen)
                seen = max(seen, current)
                time.sleep(0.05)
            group.wait_all(120)
            logs = [group.log(i) for i in range(n)]
        events = [e for e in view.events("Proposed") + view.events("Finalized") + view.events("Skipped")
                  if e["args"]["round_index"] < rounds]
        gas = sum(int(view.chain.w3.eth.get_transaction_receipt(tx)["gasUsed"]) for tx in {e["tx"] for e in events})
    served = [SERVED.search(log) for log in logs]
    bytes_served = sum(int(m.group(2)) for m in served if m)
    intervals = [b - a for a, b in zip(closed_at, closed_at[1:])]
    return {"n_agents": n, "rounds": rounds, "block_time_s": block_time,
            "round_s_median": statistics.median(intervals) if intervals else None,
            "round_s_mean": statistics.fmean(intervals) if intervals else None,
            "gas_per_round": gas / rounds, "bytes_moved_per_round": bytes_served / rounds,
            "agents_reporting": sum(1 for m in served if m)}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 rounds per size")
    parser.add_argument("--sizes", type=int, nargs="+", default=[5, 20])
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--block-time", type=float, default=0.5, help="seconds between blocks")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    binary = find_ganache()
    if binary is None:
        print(f"no ganache: {INSTALL_HINT}", file=sys.stderr)
        return 2
    rounds = args.rounds or (3 if args.quick else 6)
    rows = [measure(binary, n, rounds, args.block_time) for n in args.sizes]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, python "
          f"{platform.python_version()}; ganache block every {args.block_time:g} s; sgd on digits")
    print(f"{'agents':>6} {'round s (median)':>17} {'gas/round':>10} {'bytes moved/round':>18}")
    for row in rows:
        median = f"{row['round_s_median']:.2f}" if row["round_s_median"] is not None else "-"
        print(f"{row['n_agents']:>6} {median:>17} {row['gas_per_round']:>10.0f} {row['bytes_moved_per_round']:>18.0f}")
    out = args.out or RESULTS / ("ledger_agents-quick.json" if args.quick else "ledger_agents.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "ledger_agents", "task": "digits", "learner": "sgd", "rows": rows,
                               "machine": {"python": platform.python_version(), "cpus": os.cpu_count()}},
                              indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Markdown tables from the attack benchmark's JSON (what docs/robustness.md shows).

    python bench/byzantine_tables.py bench/results/byzantine-sgd.json [more.json ...]

One table per learner, learners:attackers and partition: a row per attack; for colearn at each threshold the
honest learners' accuracy change against the honest-only run, the targeted class's recall change and the
malicious proposals accepted; for each anchor its accuracy and recall change. Seed means.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.byzantine import summarise  # noqa: E402


def _cell(row: Dict[str, Any], with_accepts: bool) -> str:
    if row is None:
        return "-"
    delta, recall = row.get("delta"), row.get("delta_recall")
    text = f"{delta:+.1f} / {recall:+.1f}" if delta is not None else f"{row['accuracy']:.1f}"
    return f"{text} ({row['mal_acc']})" if with_accepts and row.get("mal_acc") not in (None, "0/0") else text


def tables(rows: List[Dict[str, Any]]) -> str:
    """The markdown for every (learner, n, k, partition) group in ``rows``."""
    groups: Dict[Tuple, List[Dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["learner"], row["n"], row["k"], row["partition"]), []).append(row)
    out: List[str] = []
    for (learner, n, k, partition), members in sorted(groups.items(), key=lambda item: str(item[0])):
        columns = sorted({(r["method"], r["threshold"]) for r in members},
                         key=lambda c: (not c[0].startswith("colearn"), c[0], c[1]))
        names = [f"{m} {t:g}" if m.startswith("colearn") else m for m, t in columns]
        base = {(r["method"], r["threshold"]): r for r in members if r["attack"] == "none"}
        out.append(f"### {learner}, {k} of {n} malicious, {partition}\n")
        out.append("honest-only accuracy: " + ", ".join(
            f"{name} {base[c]['accuracy']:.1f}" for name, c in zip(names, columns) if c in base) + "\n")
        out.append("| attack | " + " | ".join(names) + " |")
        out.append("|---|" + "---|" * len(names))
        attacks = sorted({r["attack"] for r in members if r["attack"] != "none"})
        index = {(r["attack"], r["method"], r["threshold"]): r for r in members}
        for attack in attacks:
            cells = [_cell(index.get((attack, m, t)), m.startswith("colearn")) for m, t in columns]
            out.append(f"| {attack} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def main(paths: Sequence[str]) -> None:
    raw: List[Dict[str, Any]] = []
    for path in paths:
        raw.extend(json.loads(Path(path).read_text())["raw"])
    print("Cells: accuracy change / target-class recall change, in points, against the same method's honest-only "
          "run on the same honest learners (seed means); for colearn, malicious proposals accepted in brackets.\n")
    print(tables(summarise(raw)))


if __name__ == "__main__":
    main(sys.argv[1:])

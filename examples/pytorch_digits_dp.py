"""The accuracy / privacy trade-off with PyTorch + opacus: ``digits_dp_tradeoff.py --framework torch``.

    python examples/pytorch_digits_dp.py [--plot dp.png] [--fast]
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Dict, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
import digits_dp_tradeoff  # noqa: E402


def main(argv: Optional[Sequence[str]] = None) -> Dict:
    return digits_dp_tradeoff.main([*(sys.argv[1:] if argv is None else argv), "--framework", "torch"])


if __name__ == "__main__":
    main()

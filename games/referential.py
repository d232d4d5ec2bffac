"""Referential game with forget-and-relearn: `python -m games.referential --out runs/demo`.

The sender sees a target object and sends a message; the receiver picks the target among
`--n-candidates` objects. Training runs in generations; between generations the `--strategy`
forgets part of the agents. Without flags: the paper's 8 x 4 objects, partial balanced forgetting,
4 generations of 3,000 iterations. Writes RUN_DIR/config.json, generations.jsonl (one record per
generation), evaluations.jsonl, language.json, checkpoint.pt and topsim.png.
"""

from __future__ import annotations

import sys
from typing import Sequence

from analysis.cli import starting

with starting(__name__):  # Ctrl-C while torch loads: one line, exit 130
    from games.cli import main as run_game


def main(argv: Sequence[str] | None = None) -> int:
    return run_game("referential", __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())

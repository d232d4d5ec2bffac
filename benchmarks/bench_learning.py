"""Learning on configurations no preset tunes: our REINFORCE games against EGG's, same budget.

For each cell of a grid (game, attributes x values, vocabulary, message length) both sides train
for the same number of batches of the same size, with the same hidden size and learning rate;
everything else is each side's own default:

- ours: `run_language_batched` (all seeds of a cell in one process), package defaults apart from
  the shape fields; and once more with the defaults of before issue 16 (`EARLIER_DEFAULTS`: LSTM,
  a sampling listener trained by REINFORCE with a Linear layer on its message encoding, no
  baseline), to show what the defaults changed;
- EGG: `egg.zoo.basic_games`' REINFORCE game (its `Sender` / `RecoReceiver` / `DiscriReceiver`
  cores in `RnnSenderReinforce` / `RnnReceiverDeterministic`, `SenderReceiverRnnReinforce` with its
  mean baseline, sender entropy 0.1, receiver entropy 0, EGG's RNN cell, embedding 10, EOS), on
  batches drawn from our game's sampler, trained by `emergent_frl.interop.run_egg_generations`.

Both are scored the same way: greedy accuracy on our game's evaluation set (every object;
referential: our fixed candidate sets) and topsim under EGG's convention on the greedy messages.
Prints a markdown table with the per-cell mean over seeds and the ratio ours / EGG. EGG columns
appear when `egg.core` is importable (EGG is not on PyPI: see docs/egg.md).

    PYTHONPATH=/path/to/EGG python benchmarks/bench_learning.py [--iterations 2000] [--seeds 0-2]
        [--cells rec-2x4-v8-l2 ref-3x5-v10-l3 ...] [--no-egg] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import platform
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from emergent_frl.batched import run_language_batched  # noqa: E402
from emergent_frl.batched.runs import parse_seeds  # noqa: E402
from emergent_frl.training import LanguageGameConfig, build_game  # noqa: E402
from arguments import positive  # noqa: E402 (benchmarks/arguments.py)

GAMES = {"rec": "reconstruction", "ref": "referential"}
CELL = re.compile(r"^(rec|ref)-(\d+)x(\d+)-v(\d+)-l(\d+)$")
# 2 to 4 attributes, 3 to 10 values, vocabularies 5 to 16, lengths 2 to 4, both games.
DEFAULT_CELLS = (
    "rec-2x4-v8-l2", "ref-2x4-v8-l2",
    "rec-2x10-v10-l3", "ref-2x10-v10-l3",
    "rec-3x5-v10-l3", "ref-3x5-v10-l3",
    "rec-4x3-v5-l4", "ref-4x3-v5-l4",
    "rec-3x8-v16-l4", "ref-3x8-v16-l4",
)


@dataclass(frozen=True)
class Cell:
    game: str
    n_attributes: int
    n_values: int
    vocab_size: int
    max_len: int

    @classmethod
    def parse(cls, text: str) -> "Cell":
        match = CELL.match(text)
        if not match:
            raise argparse.ArgumentTypeError(
                f"cell {text!r}: expected GAME-AxV-vVOCAB-lLEN with GAME rec or ref, e.g. rec-3x5-v10-l3")
        kind, a, v, vocab, length = match.groups()
        cell = cls(GAMES[kind], int(a), int(v), int(vocab), int(length))
        try:
            LanguageGameConfig(**cell.shape()).validate()
        except ValueError as error:
            raise argparse.ArgumentTypeError(f"cell {text!r}: {error}") from None
        return cell

    @property
    def name(self) -> str:
        return f"{self.game[:3]}-{self.n_attributes}x{self.n_values}-v{self.vocab_size}-l{self.max_len}"

    def shape(self) -> dict[str, Any]:
        return {"game": self.game, "n_attributes": self.n_attributes, "n_values": self.n_values,
                "vocab_size": self.vocab_size, "max_len": self.max_len}


@dataclass(frozen=True)
class Budget:
    """What both sides share."""

    iterations: int
    batch_size: int
    hidden_size: int
    lr: float


# -- ours ---------------------------------------------------------------------------------------
# The package defaults before issue 16 changed them (the paper's agents and listener).
EARLIER_DEFAULTS = {"cell": "lstm", "receiver_training": "reinforce", "receiver_head": True, "baseline": False}


def run_ours(cell: Cell, budget: Budget, seeds: list[int], settings: dict[str, Any] | None = None
             ) -> list[dict[str, float]]:
    """Our game, package defaults apart from the shape fields, the shared budget and `settings`."""
    values = [{**cell.shape(), "hidden_size": budget.hidden_size, "batch_size": budget.batch_size,
               "lr_sender": budget.lr, "lr_receiver": budget.lr, **(settings or {}), "seed": seed,
               "generations": 1, "iterations_per_generation": budget.iterations, "eval_every": 0}
              for seed in seeds]
    records = run_language_batched(values, progress=False)
    return [{"accuracy": r[-1]["accuracy"], "topsim": r[-1]["topsim"],
             "distinct": r[-1]["distinct_messages"]} for r in records]


# -- EGG ----------------------------------------------------------------------------------------
def egg_available() -> bool:
    try:
        import egg.core  # noqa: F401
        from egg.zoo.basic_games import architectures  # noqa: F401
    except ImportError:
        return False
    return True


def reco_loss(n_attributes: int, n_values: int):
    """basic_games' reconstruction loss: mean over attributes of the cross-entropy; accuracy:
    every attribute right."""
    def loss(sender_input, _message, _receiver_input, receiver_output, labels, _aux_input):
        batch = sender_input.size(0)
        logits = receiver_output.view(batch * n_attributes, n_values)
        correct = (logits.argmax(dim=1) == labels.reshape(-1)).view(batch, n_attributes)
        acc = (correct.sum(-1) == n_attributes).float()
        ce = F.cross_entropy(logits, labels.reshape(-1), reduction="none").view(batch, -1).mean(1)
        return ce, {"acc": acc}
    return loss


def discri_loss(_sender_input, _message, _receiver_input, receiver_output, labels, _aux_input):
    """basic_games' discrimination loss: cross-entropy over candidate positions."""
    acc = (receiver_output.argmax(dim=1) == labels).float()
    return F.cross_entropy(receiver_output, labels, reduction="none"), {"acc": acc}


class OurBatches:
    """EGG batches (sender_input, labels, receiver_input) drawn from our game's sampler: both sides
    see the same data distribution (referential: our candidate sets)."""

    def __init__(self, game, batch_size: int, seed: int):
        self.game, self.batch_size = game, batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def __iter__(self) -> Iterator[tuple]:
        while True:
            batch = self.game.sample_batch(self.batch_size, self.generator)
            yield egg_batch(batch)


def egg_batch(batch) -> tuple:
    if batch.receiver_input is None:
        return batch.sender_input, batch.labels
    return batch.sender_input, batch.labels, batch.receiver_input


def run_egg(cell: Cell, budget: Budget, seed: int) -> dict[str, float]:
    """basic_games' REINFORCE game with EGG's defaults, on the shared budget."""
    import egg.core as core
    from egg.zoo.basic_games.architectures import DiscriReceiver, RecoReceiver, Sender

    from emergent_frl.interop import run_egg_generations

    ours = build_game(LanguageGameConfig(**cell.shape(), batch_size=budget.batch_size, seed=seed))
    n_features = ours.space.input_size
    torch.manual_seed(seed)
    if cell.game == "reconstruction":
        receiver_core, loss = RecoReceiver(n_features, budget.hidden_size), reco_loss(cell.n_attributes, cell.n_values)
    else:
        receiver_core, loss = DiscriReceiver(n_features, budget.hidden_size), discri_loss
    sender = core.RnnSenderReinforce(Sender(n_hidden=budget.hidden_size, n_features=n_features),
                                     vocab_size=cell.vocab_size, embed_dim=10, hidden_size=budget.hidden_size,
                                     cell="rnn", max_len=cell.max_len)
    receiver = core.RnnReceiverDeterministic(receiver_core, vocab_size=cell.vocab_size, embed_dim=10,
                                             hidden_size=budget.hidden_size, cell="rnn")
    game = core.SenderReceiverRnnReinforce(sender, receiver, loss, sender_entropy_coeff=0.1,
                                           receiver_entropy_coeff=0)
    evaluation = ours.evaluation_batches()["all"]
    attributes = ours.space.attributes_of(torch.arange(ours.space.n_objects)).numpy()
    [record] = run_egg_generations(
        game, OurBatches(ours, budget.batch_size, seed), {}, 1, budget.iterations,
        eval_batch=egg_batch(evaluation), optimizer=torch.optim.Adam(game.parameters(), lr=budget.lr))
    # Topsim on every object once (referential evaluation repeats each object as a target).
    spoken = egg_topsim(game, ours, attributes)
    return {"accuracy": record["acc"], "topsim": spoken[0], "distinct": spoken[1]}


@torch.no_grad()
def egg_topsim(game, ours, attributes: np.ndarray) -> tuple[float, int]:
    """Topsim (EGG's convention, messages as given) and distinct messages of EGG's greedy sender."""
    from analysis.compositionality import topographic_similarity

    game.eval()
    message, _, _ = game.sender(ours.space.encode_index(torch.arange(ours.space.n_objects)))
    symbols = message.numpy()
    try:
        topsim = float(topographic_similarity(attributes, symbols, convention="egg"))
    except ValueError:
        topsim = float("nan")
    return topsim, int(np.unique(symbols, axis=0).shape[0])


# -- the table ----------------------------------------------------------------------------------
def summary(values: list[dict[str, float]], key: str) -> tuple[float, float, float]:
    xs = np.array([v[key] for v in values], dtype=float)
    return float(np.nanmean(xs)), float(np.nanmin(xs)), float(np.nanmax(xs))


def fmt(values: list[dict[str, float]] | None, key: str) -> str:
    if not values:
        return "-"
    mean, low, high = summary(values, key)
    return f"{mean:.2f} ({low:.2f}-{high:.2f})"


def ratio(ours: list[dict[str, float]], egg: list[dict[str, float]] | None, key: str) -> str:
    if not egg:
        return "-"
    theirs = summary(egg, key)[0]
    return f"{summary(ours, key)[0] / theirs:.2f}" if theirs > 0 else "-"


def table(results: dict[str, dict[str, Any]]) -> str:
    head = ("| cell | objects | acc ours | acc ours (earlier defaults) | acc EGG | acc ratio | "
            "topsim ours | topsim ours (earlier defaults) | topsim EGG | topsim ratio | "
            "distinct msgs ours / EGG |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, r in results.items():
        ours, plain, egg = r["ours"], r["ours_earlier_defaults"], r.get("egg")
        distinct = f"{summary(ours, 'distinct')[0]:.0f} / " + (f"{summary(egg, 'distinct')[0]:.0f}" if egg else "-")
        lines.append(f"| {name} | {r['objects']} | {fmt(ours, 'accuracy')} | {fmt(plain, 'accuracy')} | "
                     f"{fmt(egg, 'accuracy')} | {ratio(ours, egg, 'accuracy')} | {fmt(ours, 'topsim')} | "
                     f"{fmt(plain, 'topsim')} | {fmt(egg, 'topsim')} | {ratio(ours, egg, 'topsim')} | {distinct} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", nargs="+", type=Cell.parse, default=[Cell.parse(c) for c in DEFAULT_CELLS],
                        help="GAME-AxV-vVOCAB-lLEN, GAME rec or ref (default: a 10-cell grid)")
    parser.add_argument("--iterations", type=positive, default=2000, help="training batches, both sides")
    parser.add_argument("--batch-size", type=positive, default=100, help="objects per batch, both sides")
    parser.add_argument("--hidden-size", type=positive, default=100, help="RNN hidden size, both sides")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate of every agent, both sides")
    parser.add_argument("--seeds", default="0-2", help="e.g. 0-2 or 0,5,7")
    parser.add_argument("--no-egg", action="store_true", help="ours only, even where egg is importable")
    parser.add_argument("--json", type=Path, help="also write every per-seed result here")
    args = parser.parse_args(argv)
    if not args.lr > 0:
        parser.error(f"--lr: must be > 0, got {args.lr}")
    try:
        seeds = parse_seeds(args.seeds)
    except ValueError as error:
        parser.error(f"--seeds: {error}")
    torch.set_num_threads(1)
    budget = Budget(args.iterations, args.batch_size, args.hidden_size, args.lr)
    with_egg = not args.no_egg and egg_available()
    if not args.no_egg and not with_egg:
        print("egg.core is not importable: ours only (EGG is not on PyPI, see docs/egg.md)", file=sys.stderr)
    results: dict[str, dict[str, Any]] = {}
    started = time.perf_counter()
    for cell in args.cells:
        t0 = time.perf_counter()
        r: dict[str, Any] = {"objects": cell.n_values ** cell.n_attributes}
        r["ours"] = run_ours(cell, budget, seeds)
        r["ours_earlier_defaults"] = run_ours(cell, budget, seeds, EARLIER_DEFAULTS)
        if with_egg:
            r["egg"] = [run_egg(cell, budget, seed) for seed in seeds]
        r["seconds"] = time.perf_counter() - t0
        results[cell.name] = r
        print(f"{cell.name}: {r['seconds']:.0f}s  acc ours {fmt(r['ours'], 'accuracy')}  "
              f"earlier defaults {fmt(r['ours_earlier_defaults'], 'accuracy')}  EGG {fmt(r.get('egg'), 'accuracy')}",
              file=sys.stderr, flush=True)
    print(f"budget: {budget.iterations} batches of {budget.batch_size}, hidden {budget.hidden_size}, "
          f"Adam lr {budget.lr}; seeds {seeds}; {platform.processor() or platform.machine()}, "
          f"{time.perf_counter() - started:.0f}s in all\n")
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps({"budget": vars(budget), "seeds": seeds, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Ease of teaching (Li & Bowling 2019): how fast a fresh listener learns the current language.

Recorded after a generation (`RelearnConfig.ease_of_teaching`), on a copy of the game with its
own random streams, so the run itself is untouched. The speaker is frozen and greedy; a fresh
listener (new weights, fresh Adam, fresh REINFORCE baseline) learns from it and its greedy
accuracy is read at `teaching_steps`: step 0 (the untrained listener), log-spaced early points
(1, 2, 5, 10, 20, 50, ...) where most of the learning happens, then every `eval_every`.

Two protocols (`RelearnConfig.ease_of_teaching_protocol`):
- "single": one fresh listener;
- "li_bowling": Li & Bowling's, `ease_of_teaching_listeners` fresh listeners, each from its own
  seed stream and trained for the same iterations, their curves averaged (their code: 30
  listeners of 1,000 iterations).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from emergent_frl.forgetting import reset_module
from emergent_frl.games import LanguageGame
from emergent_frl.training import LanguageGameConfig, train_iterations

if TYPE_CHECKING:
    from emergent_frl.relearn import RelearnConfig

PROTOCOLS = ("single", "li_bowling")


def teaching_steps(iterations: int, eval_every: int) -> list[int]:
    """The fresh listener's evaluation points: 0, the 1-2-5 series below `eval_every`, every
    multiple of `eval_every`, and `iterations` itself (always the last point)."""
    if iterations < 1 or eval_every < 1:
        raise ValueError(f"iterations={iterations}, eval_every={eval_every}: both must be >= 1")
    steps = {0, iterations}
    decade = 1
    while decade < eval_every:
        steps.update(s for s in (decade, 2 * decade, 5 * decade) if s < min(eval_every, iterations))
        decade *= 10
    steps.update(range(eval_every, iterations + 1, eval_every))
    return sorted(steps)


def listener_seed(seed: int, listener: int) -> int:
    """Listener 0 uses `seed` itself (so li_bowling with one listener is the single protocol);
    the others get independent streams derived from (seed, listener)."""
    if listener == 0:
        return seed
    return int(np.random.SeedSequence([seed, listener]).generate_state(1, dtype=np.uint64)[0] >> 1)


@torch.no_grad()
def greedy_accuracy(game: LanguageGame) -> float:
    """Greedy accuracy on the game's evaluation set of every object (what `evaluate` records as
    `accuracy`), without the language scores the probe does not need. Modes are restored."""
    modes = (game.sender.training, game.receiver.training)
    game.sender.eval()
    game.receiver.eval()
    try:
        return float(game.play(game.evaluation_batches()["all"]).accuracy.mean())
    finally:
        game.sender.train(modes[0])
        game.receiver.train(modes[1])


def teach_fresh_listener(game: LanguageGame, lr: float, steps: list[int], seed: int) -> list[float]:
    """Greedy accuracy at each of `steps` of one fresh listener learning from `game`'s frozen,
    greedy speaker; works on a copy with its own random streams (`seed`)."""
    probe = copy.deepcopy(game)
    reset_module(probe.receiver, torch.Generator().manual_seed(seed))
    if probe.baseline is not None:  # a running mean of the old pair's loss would misjudge a new listener
        probe.baseline.mean.zero_()
        probe.baseline.count.zero_()
    generator = torch.Generator(device=game.device).manual_seed(seed)
    probe.sender.eval()
    probe.sender.requires_grad_(False)  # frozen: no gradient is computed for it, only the listener's
    probe.receiver.train()
    optimizer = torch.optim.Adam(probe.receiver.parameters(), lr=lr)
    curve, done = [], 0
    for step in steps:
        if step > done:
            train_iterations(probe, {"receiver": optimizer}, step - done, generator=generator,
                             iteration_offset=done, progress=False)
            done = step
        curve.append(greedy_accuracy(probe))
    return curve


def ease_of_teaching(game: LanguageGame, config: LanguageGameConfig, relearn: "RelearnConfig",
                     seed: int) -> dict[str, Any]:
    """Li & Bowling's teaching speed of `game`'s current language, as record fields:

    ease_of_teaching: the area under the (mean) accuracy-against-iteration curve divided by the
        iterations (trapezoids between the recorded steps), in [0, 1]: 1 is a listener right
        from the start;
    ease_of_teaching_curve: greedy accuracy at each step (mean over listeners);
    ease_of_teaching_steps: the listener's iterations at each point (0: before any training);
    ease_of_teaching_protocol, ease_of_teaching_listeners: how many listeners were averaged;
    ease_of_teaching_curve_sd (li_bowling only): their standard deviation at each step.
    """
    steps = teaching_steps(relearn.ease_of_teaching_iterations, relearn.ease_of_teaching_eval_every)
    protocol = relearn.ease_of_teaching_protocol
    listeners = relearn.ease_of_teaching_listeners if protocol == "li_bowling" else 1
    curves = np.array([teach_fresh_listener(game, config.lr_receiver, steps, listener_seed(seed, k))
                       for k in range(listeners)])
    mean = curves.mean(axis=0)
    record: dict[str, Any] = {
        "ease_of_teaching": float(np.trapezoid(mean, steps) / steps[-1]),
        "ease_of_teaching_curve": mean.tolist(),
        "ease_of_teaching_steps": steps,
        "ease_of_teaching_protocol": protocol,
        "ease_of_teaching_listeners": listeners,
    }
    if protocol == "li_bowling":
        record["ease_of_teaching_curve_sd"] = curves.std(axis=0).tolist()
    return record

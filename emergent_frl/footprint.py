"""How much memory a language run needs, estimated before any work, so that a size typed one
digit too long is refused with the estimate instead of ending in an out-of-memory kill.

The parameter count is exact: the agents are built on the `meta` device, which allocates nothing.
The activations are an estimate of what one training step and one greedy evaluation hold at once
(float32): the recurrent cells' saved gates per message position, the logits over the vocabulary,
the encoded objects and candidates, the evaluation's pass over every object, and the referential
game's candidate draw against the whole object pool. benchmarks/bench_footprint.py compares it
with measured peaks (docs/RESULTS.md, Reliability).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


FLOAT_BYTES = 4
# Copies of every parameter a run keeps: weights, gradients, Adam's two moments, the batched
# engine's stacked copy, and the initial weights some strategies keep for masks or rewinding.
PARAMETER_COPIES = 6
# Floats a recurrent step keeps per hidden unit for backward (LSTM gates, states, their grads).
STEP_FLOATS_PER_HIDDEN = 12
# Bytes per (target, pool object) pair while candidates are drawn, besides the attribute comparison.
PAIR_BYTES = 32
# Which knob drives each part of the estimate, named in the error (the largest relative to its default).
DRIVERS = {
    "parameters": ("vocab_size", "hidden_size", "embed_size", "n_values"),
    "training": ("batch_size", "max_len", "hidden_size", "vocab_size", "n_candidates"),
    "evaluation": ("n_values", "max_len", "eval_repeats", "n_candidates", "hidden_size", "vocab_size"),
}


@dataclass(frozen=True)
class Footprint:
    parameters: int  # exact count, both agents
    bytes: dict[str, int]  # "parameters", "training", "evaluation"

    @property
    def total(self) -> int:
        return sum(self.bytes.values())


def parameter_count(config) -> int:
    """Parameters of the sender and receiver `build_game(config)` would build, counted on `meta`
    (a user's agents that cannot be built there are built on the CPU and counted)."""
    from emergent_frl.training import build_agents

    try:
        with torch.device("meta"):
            agents = build_agents(config)
    except ValueError:
        raise
    except Exception:  # noqa: BLE001 - a user's module that needs real tensors to initialise
        with torch.random.fork_rng(devices=[]):
            agents = build_agents(config)
    return sum(p.numel() for module in agents for p in module.parameters())


def estimate(config, n_runs: int = 1) -> Footprint:
    """The memory `n_runs` runs of a validated `LanguageGameConfig` need at once (trained as one batch)."""
    space = config.space()
    hidden, vocab, length = config.hidden_size, config.vocab_size, config.max_len
    cell_input = vocab if config.embed_size is None else config.embed_size
    per_position = STEP_FLOATS_PER_HIDDEN * hidden + 4 * vocab + 2 * cell_input
    candidates = config.n_candidates if config.game == "referential" else 1
    objects_width = space.input_size + hidden
    out_width = space.input_size if config.game == "reconstruction" else candidates
    # one step: both agents over every message position, the encoded targets and candidates
    train = config.batch_size * (2 * (length + 1) * per_position + (candidates + 1) * objects_width + out_width)
    # one greedy evaluation: every object through the sender, then the receiver's evaluation batch
    repeats = config.eval_repeats if config.game == "referential" else 1
    n_objects = space.n_objects
    evaluation = (n_objects * (length + 1) * (per_position // 2 + objects_width)
                  + n_objects * repeats * ((candidates + 1) * objects_width + out_width))
    params = parameter_count(config)
    # Referential candidates are drawn against the whole distractor pool at once: per (target,
    # pool object) an attribute comparison, its count, a random key and masks (more with
    # easy_limit, which sorts the keys). The fixed evaluation sets draw every object x eval_repeats.
    pair_bytes = 0
    if config.game == "referential":
        pair_bytes = (space.n_attributes + PAIR_BYTES + (PAIR_BYTES if config.easy_limit is not None else 0)) * n_objects
    return Footprint(params, {
        "parameters": FLOAT_BYTES * PARAMETER_COPIES * params * n_runs,
        "training": (FLOAT_BYTES * train + pair_bytes * config.batch_size) * n_runs,
        # runs are evaluated one at a time
        "evaluation": FLOAT_BYTES * evaluation + pair_bytes * n_objects * repeats,
    })


def available_bytes(device: torch.device) -> int | None:
    """Memory a new allocation can get on `device` now (None where it cannot be told)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def human(n_bytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n_bytes < 1024 or unit == "PiB":
            return f"{n_bytes:.1f} {unit}" if unit != "B" else f"{int(n_bytes)} B"
        n_bytes /= 1024
    return f"{n_bytes:.1f} PiB"


def _driver(config, part: str) -> str:
    """The knob of `part` furthest above its default (the likeliest typo); sizes of the object space
    compare as object counts, an embedding against the hidden size it replaces."""
    defaults = type(config)()

    def size(of, name: str) -> float:
        if name == "n_values":
            return of.space().n_objects
        value = getattr(of, name)
        return float(of.hidden_size if value is None and name == "embed_size" else value or 0)

    return max(DRIVERS[part], key=lambda name: size(config, name) / max(size(defaults, name), 1.0))


def check_fits_in_memory(config, n_runs: int = 1, available: int | None = None) -> Footprint:
    """Raise ConfigError naming the field that drives the largest part of the estimate when the
    runs would not fit in the memory available on `config.device`."""
    from emergent_frl.training import ConfigError

    footprint = estimate(config, n_runs)
    if available is None:
        available = available_bytes(torch.device(config.device))
    if available is not None and footprint.total > available:
        part = max(footprint.bytes, key=footprint.bytes.get)
        field = _driver(config, part)
        parts = ", ".join(f"{name} {human(size)}" for name, size in footprint.bytes.items())
        runs = f" for {n_runs} runs" if n_runs > 1 else ""
        raise ConfigError(field, getattr(config, field),
                          f"the run would need about {human(footprint.total)} of memory{runs} ({parts}; "
                          f"{footprint.parameters:,} parameters), {human(available)} is available")
    return footprint


__all__ = ["Footprint", "available_bytes", "check_fits_in_memory", "estimate", "parameter_count"]

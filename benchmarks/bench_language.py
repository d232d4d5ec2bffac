"""Training throughput of the language game: eager single run vs ours vs S runs batched.

For one game config (default: the paper preset, `games/presets/paper.yaml`) this prints, measured
side by side in one process on one thread count:

  (a) a plain eager single-run loop written the obvious way: our Sender/Receiver modules
      (emergent_frl.cells), the game's own batch sampler, one torch.optim.Adam per agent,
      `loss.backward()`, and the loss and accuracy read with `.item()` every step;
  (b) our single run: `BatchedLanguageRuns` with one run (the same modules with stacked
      parameters under vmap, fused Adam over the runs' own optimizers, no host sync) with the loss under
      `torch.compile`, as the game scripts run `--seeds S` by default; and the same eager
      (`--no-compile`);
  (c) our batched runs, S = 1, 4, 16, 64 runs in one computation, as aggregate run-iterations/s,
      compiled (the default), and eager at --eager-runs.
  --no-compile times the eager variants only (no compilation at start).

Throughput is given as run-iterations/s and as GFLOP/s two ways: "model" counts the config's
matmul FLOPs of a plain forward + backward (3 x forward; ~115 MFLOP per paper-preset iteration),
the same for every variant, so it compares iterations; "executed" counts the matmul FLOPs each
variant really runs (torch.utils.flop_counter on one step), fewer than the model's: the agents'
modules, which every variant runs, skip products with the zero initial state / zero start token,
reorder two matrix chains and take the listener's first step once per vocabulary entry. Both are
set against the peak of a plain matmul measured in the same invocation (the best of a few sizes,
same threads), and executed FLOPs also against the "shape peak": the rate of the variant's own
matrix products (shapes profiled from one step), each shape timed alone with its operands in
cache. For (c) S=16 on a CPU it also prints how long those products take inside the step
(profiled), back to back on their own operands, and each after the caches are evicted. Every
variant is timed in `--rounds` interleaved rounds and the best round counts, so background load
on a shared machine hurts all variants alike; `--clock process` times this
process's CPU time instead of elapsed time. The allocator setting `BatchedLanguageRuns` makes
(`keep_freed_memory`) is process-wide, so (a) runs with it too. It measures; it asserts nothing.

    python benchmarks/bench_language.py [--runs 1 4 16 64] [--seconds 2] [--rounds 3] [--threads 1]
                                        [--clock wall|process] [--no-compile] [--eager-runs 16]
                                        [--preset paper] [--set hidden_size=64 ...]
    python benchmarks/bench_language.py --set agents=myagents:build      # your own pair (on PYTHONPATH)
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections import Counter
from pathlib import Path

import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from emergent_frl.batched import BatchedLanguageRuns, keep_freed_memory  # noqa: E402
from emergent_frl.relearn import RelearnConfig, split_config  # noqa: E402
from emergent_frl.training import LanguageGameConfig, build_game, build_optimizers, make_generator  # noqa: E402
from games.presets import load_preset  # noqa: E402

CLOCK = time.perf_counter  # --clock process: time.process_time
B_EAGER = "(b) ours, eager"


def model_flops(config: LanguageGameConfig) -> float:
    """Matmul FLOPs of one plain training iteration of one run: 3 x the forward's."""
    space = config.space()
    b, h, t, v, d = config.batch_size, config.hidden_size, config.max_len, config.vocab_size, space.input_size
    cell_in = v if config.embed_size is None else config.embed_size
    gates = {"lstm": 4, "gru": 3, "rnn": 1}[config.cell] * h
    cell = 2 * b * (cell_in + h) * gates  # one step of one agent's cell
    embed = 0 if config.embed_size is None else 2 * b * v * config.embed_size
    forward = 2 * b * d * h + t * (cell + 2 * b * h * v + embed)  # sender
    forward += t * (cell + embed)  # receiver reads the message
    if config.game == "referential":
        k = config.n_candidates
        forward += 2 * b * h * h + 2 * b * k * d * h + 2 * b * k * h
    else:
        forward += 2 * b * h * space.input_size
    return 3.0 * forward


def matmul_peak(seconds: float, device: str = "cpu") -> tuple[float, str]:
    """The best GFLOP/s of torch.mm / torch.bmm over a few sizes (float32, current threads), on
    `device`."""
    shapes = [("mm", 100, 108, 400), ("mm", 1600, 108, 400), ("mm", 512, 512, 512),
              ("mm", 1024, 1024, 1024), ("bmm16", 100, 108, 400)]
    best, where = 0.0, ""
    for kind, m, k, n in shapes:
        runs = 16 if kind == "bmm16" else 1
        a, b = torch.randn(runs, m, k, device=device), torch.randn(runs, k, n, device=device)
        f = (lambda: torch.bmm(a, b)) if runs > 1 else (lambda: torch.mm(a[0], b[0]))
        rate = 2.0 * runs * m * k * n / seconds_per_call(f, seconds / len(shapes)) / 1e9
        if rate > best:
            best, where = rate, f"{kind} {m}x{k}x{n}"
    return best, where


def _synchronize() -> None:
    """Wait for queued GPU work, so a GPU step is timed when it is done, not when it was queued."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def seconds_per_call(f, seconds: float, warmup: int = 3) -> float:
    for _ in range(warmup):
        f()
    _synchronize()
    calls, start = 0, CLOCK()
    while True:
        f()
        calls += 1
        _synchronize()
        elapsed = CLOCK() - start
        if elapsed >= seconds and calls >= 3:
            return elapsed / calls


class EagerLoop:
    """(a): the obvious single-run loop."""

    runs = 1

    def __init__(self, config: LanguageGameConfig):
        self.game = build_game(config)
        self.optimizers = build_optimizers(self.game, config)
        self.generator = make_generator(config)
        self.log: list[tuple[float, float]] = []

    def step(self) -> None:
        batch = self.game.sample_batch(self.game.batch_size, self.generator)
        out = self.game.play(batch, self.generator)
        for optimizer in self.optimizers.values():
            optimizer.zero_grad()
        out.loss.backward()
        for optimizer in self.optimizers.values():
            optimizer.step()
        self.log.append((out.loss.item(), out.accuracy.mean().item()))


class BatchedLoop:
    """(b) and (c): S runs (seeds 0..S-1) of the config in one BatchedLanguageRuns."""

    def __init__(self, config: LanguageGameConfig, runs: int, compile: bool):
        configs = [LanguageGameConfig.from_dict({**config.to_dict(), "seed": s}) for s in range(runs)]
        relearn = RelearnConfig(generations=1, iterations_per_generation=1)
        self.runs = runs
        self.batch = BatchedLanguageRuns(configs, [relearn] * runs, progress=False, compile=compile)

    def step(self) -> None:
        self.batch.train_step()


GEMMS = ("aten::mm", "aten::bmm", "aten::addmm", "aten::baddbmm")


def gemm_shapes(loop) -> list[tuple[int, int, int, int]]:
    """The (batch, m, k, n) of every matrix product one step of `loop` runs (profiled)."""
    from torch.profiler import profile

    with profile(record_shapes=True) as prof:
        loop.step()
    shapes = []
    for event in prof.events():
        if event.name not in GEMMS:
            continue
        # The two factors by position: mm/bmm (a, b[, out]), addmm/baddbmm (input, a, b[, out]).
        # A compiled step calls the out= form, so the last two shapes would be (b, out).
        first = 1 if event.name in ("aten::addmm", "aten::baddbmm") else 0
        a, b = event.input_shapes[first:first + 2]
        shapes.append((a[0] if len(a) == 3 else 1, a[-2], a[-1], b[-1]))
    return shapes


def _operands(shapes, device: str = "cpu") -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(torch.randn(b, m, k, device=device), torch.randn(b, k, n, device=device)) for b, m, k, n in shapes]


def gemm_peak(shapes: list[tuple[int, int, int, int]], seconds: float, device: str = "cpu") -> float:
    """GFLOP/s of the step's matrix products when each shape is timed alone, over and over (fresh
    operands on the step's device, same threads, so they stay in cache): the best rate the step's
    own GEMM shapes allow, a fairer ceiling than a 1024-cube."""
    counts = Counter(shapes)
    total = 0.0
    for (b, m, k, n), count in counts.items():
        (x, y), = _operands([(b, m, k, n)], device)
        total += count * seconds_per_call(lambda: torch.bmm(x, y), seconds / len(counts), warmup=2)
    return sum(2.0 * b * m * k * n for b, m, k, n in shapes) / total / 1e9


def gemm_seconds_replayed(shapes: list[tuple[int, int, int, int]], seconds: float, device: str = "cpu") -> float:
    """Seconds for the step's matrix products run back to back, each on its own operands: their
    time with the step's working set of operands (which may not fit in cache), without the rest."""
    operands = _operands(shapes, device)

    def all_products() -> None:
        for x, y in operands:
            torch.bmm(x, y)

    return seconds_per_call(all_products, seconds, warmup=2)


def gemm_seconds_in_step(loop, steps: int = 10) -> float:
    """Seconds per step that `loop`'s matrix products take inside the step (profiled, CPU time):
    beside the shape peak, this says whether the products or everything else falls short."""
    from torch.profiler import profile

    with profile() as prof:
        for _ in range(steps):
            loop.step()
    return sum(e.cpu_time_total for e in prof.events() if e.name in GEMMS) / 1e6 / steps


def gemm_seconds_cold(shapes: list[tuple[int, int, int, int]], repeats: int = 10) -> float:
    """Seconds for the step's matrix products run one by one, each after a 64 MiB write that evicts
    the caches (CPU): their time when every operand comes from memory, as in a step whose working
    set is larger than the cache."""
    evict = torch.empty(16 * 2**20)
    operands = _operands(shapes)
    totals = []
    for _ in range(repeats):
        total = 0.0
        for x, y in operands:
            evict.add_(1.0)
            start = time.perf_counter()
            torch.bmm(x, y)
            total += time.perf_counter() - start
        totals.append(total)
    return sorted(totals)[len(totals) // 2]


def executed_flops(loop) -> float:
    """Matmul FLOPs one step of `loop` runs, per run."""
    with FlopCounterMode(display=False) as counter:
        loop.step()
    return counter.get_total_flops() / loop.runs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="paper", help="game preset (games/presets/NAME.yaml)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="override config fields, e.g. hidden_size=64 cell=gru")
    parser.add_argument("--runs", type=int, nargs="+", default=[1, 4, 16, 64], help="S values for (c)")
    parser.add_argument("--seconds", type=float, default=2.0, help="timing per variant and round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the best counts")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    parser.add_argument("--clock", choices=["wall", "process"], default="wall",
                        help="wall: elapsed time (default); process: this process's CPU time, which "
                             "discounts time the OS gives other processes on a shared machine (with "
                             "--threads > 1 it adds up the threads' CPU time)")
    parser.add_argument("--no-compile", action="store_true",
                        help="time the eager variants only: (b) and (c) without torch.compile")
    parser.add_argument("--eager-runs", type=int, nargs="+", default=[16],
                        help="S values of (c) also timed eager (default 16)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    global CLOCK
    CLOCK = time.perf_counter if args.clock == "wall" else time.process_time
    keep_freed_memory()  # what BatchedLanguageRuns does; set first so that every variant has it

    values = {k: v for k, v in load_preset(args.preset).items()}
    for item in args.set:
        key, _, text = item.partition("=")
        values[key] = yaml.safe_load(text)
    game_config, _ = split_config(values)
    game_config = game_config.validate()
    # Your own agents (--set agents=MODULE:FUNCTION): "model" FLOPs are what (a) executes.
    flops = model_flops(game_config) if game_config.agents is None else executed_flops(EagerLoop(game_config))

    compiled = not args.no_compile
    eager_runs = args.runs if args.no_compile else args.eager_runs
    variants = {"(a) eager single run": lambda: EagerLoop(game_config)}
    if compiled:
        variants["(b) ours, single run"] = lambda: BatchedLoop(game_config, 1, True)
    variants[B_EAGER] = lambda: BatchedLoop(game_config, 1, False)
    for s in args.runs:
        if compiled:
            variants[f"(c) batched S={s}"] = lambda s=s: BatchedLoop(game_config, s, True)
        if s in eager_runs:
            variants[f"(c) S={s} eager"] = lambda s=s: BatchedLoop(game_config, s, False)
    loops = {name: make() for name, make in variants.items()}
    executed, shapes = {}, {}
    for name, loop in loops.items():  # warm-up (and compilation) outside the timed rounds
        for _ in range(3):
            loop.step()
        executed[name] = executed_flops(loop)
        shapes[name] = gemm_shapes(loop)
    shape_peak = {name: gemm_peak(found, args.seconds, game_config.device) if found else math.nan
                  for name, found in shapes.items()}

    best = {name: math.inf for name in loops}
    peak, peak_where = 0.0, ""
    load_before = os.getloadavg()
    for _ in range(args.rounds):
        rate, where = matmul_peak(args.seconds, game_config.device)
        if rate > peak:
            peak, peak_where = rate, where
        for name, loop in loops.items():
            best[name] = min(best[name], seconds_per_call(loop.step, args.seconds, warmup=1))
    load_after = os.getloadavg()

    print(f"config: preset {args.preset} {' '.join(args.set)}; model FLOPs {flops / 1e6:.1f} MFLOP per "
          f"run-iteration (matmuls of a plain forward + backward)")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {os.cpu_count()} CPUs; "
          f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after")
    print(f"matmul peak: {peak:.1f} GFLOP/s ({peak_where}); best of {args.rounds} rounds of "
          f"{args.seconds:g} s per variant, {args.clock} clock")
    print()
    print(f"{'variant':22s} {'ms/step':>8s} {'run-it/s':>9s} {'vs (a)':>7s} | {'model':>6s} {'%peak':>6s} | "
          f"{'executed':>8s} {'GFLOP/s':>8s} {'%peak':>6s} | {'shape':>6s} {'%shape':>6s}")
    print(f"{'':22s} {'':>8s} {'':>9s} {'':>7s} | {'GFLOP/s':>6s} {'':>6s} | {'MFLOP/it':>8s} {'':>8s} {'':>6s} | "
          f"{'peak':>6s} {'peak':>6s}")
    rate_a = 1.0 / best["(a) eager single run"]
    for name, seconds in best.items():
        rate = loops[name].runs / seconds
        model, done = rate * flops / 1e9, rate * executed[name] / 1e9
        print(f"{name:22s} {seconds * 1e3:8.2f} {rate:9.1f} {rate / rate_a:6.2f}x | {model:7.1f} "
              f"{100 * model / peak:5.1f}% | {executed[name] / 1e6:8.1f} {done:8.1f} {100 * done / peak:5.1f}% | "
              f"{shape_peak[name]:6.1f} {100 * done / shape_peak[name]:5.1f}%")
    print("shape peak: GFLOP/s of the variant's own matrix products (the shapes one step runs), each shape timed "
          "alone over and over; %shape peak: executed GFLOP/s against it")
    print()
    for b_name in ("(b) ours, single run", B_EAGER):
        if b_name in best:
            print(f"{b_name} / (a): {1.0 / best[b_name] / rate_a:.2f}x   (target >= 2x)")
    if "(c) batched S=16" in best and game_config.device == "cpu":
        name = "(c) batched S=16"
        found = shapes[name]
        alone = sum(2.0 * b * m * k * n for b, m, k, n in found) / shape_peak[name] / 1e9
        print(f"{name}, its {len(found)} matrix products per step: {1e3 * gemm_seconds_in_step(loops[name]):.2f} ms "
              f"inside the {1e3 * best[name]:.2f} ms step (profiled); {1e3 * alone:.2f} ms each shape timed alone "
              f"(the shape peak); {1e3 * gemm_seconds_replayed(found, args.seconds):.2f} ms back to back on their own "
              f"operands; {1e3 * gemm_seconds_cold(found):.2f} ms each after evicting the caches")
    for c_name in ("(c) batched S=16", "(c) S=16 eager"):
        if c_name in best:
            rate_16 = 16 / best[c_name]
            print(f"{c_name}: {100 * rate_16 * flops / 1e9 / peak:.0f}% of matmul peak in model FLOPs "
                  f"({100 * rate_16 * executed[c_name] / 1e9 / peak:.0f}% in executed FLOPs, "
                  f"{100 * rate_16 * executed[c_name] / 1e9 / shape_peak[c_name]:.0f}% of its own shapes' peak; "
                  f"target >= 50%), {rate_16 / rate_a:.2f}x the aggregate of (a) "
                  f"(target >= {2.5 if game_config.agents else 3}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

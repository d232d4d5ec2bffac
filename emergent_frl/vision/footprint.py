"""How much memory an image run needs, estimated before any work, so that a size typed a digit too
long (--width, --image-size, --batch-size) is refused with the estimate and the memory available,
instead of ending in an out-of-memory kill halfway through a generation.

The network is built on the `meta` device (shapes only, nothing allocated) and run on one meta
example with a hook on every leaf module, which counts the parameters exactly and the floats each
layer outputs. The rest is an upper-bound estimate in float32:

- parameters: PARAMETER_COPIES copies of every weight (see below);
- training: one step keeps every layer's output for backward and, at its peak, a gradient as large
  (TRAINING_FACTOR), plus the batch's augmented input copies;
- evaluation: no graph; the largest layer's input and output at once, for the evaluation batch;
- data: what the data set holds in memory (the caller says; image files are read per batch).

Against the peak resident memory of real CPU runs (small_cnn, mlp, resnet18; batches of 128 to
512, images of 32 to 64 pixels) the estimate came out 1.2x to 2.5x above, never below. The meta
forward pass costs no time of its own: its first call imports torch's decompositions, which the
first optimizer step would import anyway.

The language track's counterpart is `emergent_frl.footprint`, whose measurement of the memory
available on a device this module shares.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

import torch

from ..footprint import available_bytes, human
from .checks import flag_of
from .models import construct_model

FLOAT_BYTES = 4
# Weights, gradients, SGD momentum, the forgetting operator's snapshot of the initial weights
# (masks, rewinding; the probe's forgotten copy) and the checkpoint's serialized copy.
PARAMETER_COPIES = 5
# Every layer's output kept for backward, plus a gradient as large at backward's peak.
TRAINING_FACTOR = 2
# A training batch's input in memory at once: the raw batch, its padded and shifted copies, normalized.
INPUT_COPIES = 4


@dataclass(frozen=True)
class Footprint:
    parameters: int  # exact count
    bytes: dict[str, int]  # "parameters", "training", "evaluation", "data"

    @property
    def total(self) -> int:
        return sum(self.bytes.values())

    def describe(self) -> str:
        parts = ", ".join(f"{name} {human(size)}" for name, size in self.bytes.items())
        return f"about {human(self.total)} of memory ({parts}; {self.parameters:,} parameters)"


@dataclass(frozen=True)
class ModelCosts:
    parameters: int
    outputs: int  # floats all leaf modules output for one example
    largest: int  # floats of the largest single output (plus its input) for one example


Knobs = dict[str, tuple[int | None, int, int]]  # setting -> (value, default, power it enters with)


def model_costs(arch: str, num_classes: int, *, image_size: int, in_channels: int = 3, stem: str = "imagenet",
                width: int | None = None) -> ModelCosts:
    """Parameters and per-example activation sizes of the network, counted on the meta device."""
    with torch.device("meta"):
        model = construct_model(arch, num_classes, image_size=image_size, in_channels=in_channels,
                                stem=stem, width=width)
    sizes: list[tuple[int, int]] = []

    def record(module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        sizes.append((sum(x.numel() for x in inputs if isinstance(x, torch.Tensor)), output.numel()))

    leaves = [module for module in model.modules() if not list(module.children())]
    hooks = [module.register_forward_hook(record) for module in leaves]
    try:
        with torch.no_grad():
            model.eval()(torch.empty(1, in_channels, image_size, image_size, device="meta"))
    finally:
        for hook in hooks:
            hook.remove()
    return ModelCosts(parameters=sum(p.numel() for p in model.parameters()),
                      outputs=sum(out for _, out in sizes), largest=max(inp + out for inp, out in sizes))


def estimate(costs: ModelCosts, *, image_size: int, in_channels: int = 3, batch_size: int, eval_batch: int,
             data_bytes: int, parameter_copies: int = PARAMETER_COPIES) -> Footprint:
    """The memory of one run: see the module docstring for each part."""
    input_floats = in_channels * image_size * image_size
    training = batch_size * (TRAINING_FACTOR * costs.outputs + INPUT_COPIES * input_floats)
    evaluation = eval_batch * (costs.largest + input_floats)
    return Footprint(costs.parameters, {
        "parameters": FLOAT_BYTES * parameter_copies * costs.parameters,
        "training": FLOAT_BYTES * training,
        "evaluation": FLOAT_BYTES * evaluation,
        "data": data_bytes,
    })


# The settings that drive each part; the error names the one furthest above its default (the
# likeliest typo), measured by the (value, default, power) the caller gives for each.
DRIVERS = {"parameters": ("width", "image_size"), "training": ("batch_size", "image_size", "width"),
           "evaluation": ("batch_size", "image_size", "width"), "data": ("image_size",)}


def driver(footprint: Footprint, knobs: Knobs) -> str:
    """The flag to name: among the drivers of the largest part, the knob (value, default, power)
    furthest above its default."""
    part = max(footprint.bytes, key=footprint.bytes.get)

    def ratio(name: str) -> float:
        value, default, power = knobs.get(name, (None, 1, 1))
        return 0.0 if value is None else (value / default) ** power

    return max(DRIVERS[part], key=ratio)


def check_fits(footprint: Footprint, device: torch.device, knobs: Knobs, available: int | None = None) -> None:
    """ValueError naming the flag that drives the largest part when the run would not fit in the
    memory `device` has free now (nothing is refused where the free memory cannot be told)."""
    if available is None:
        available = available_bytes(device)
    if available is None or footprint.total <= available:
        return
    name = driver(footprint, knobs)
    flag = flag_of(name)
    raise ValueError(f"{flag} {knobs[name][0]}: the run would need {footprint.describe()}, "
                     f"{human(available)} is available on {device.type}; reduce {flag}")


@contextlib.contextmanager
def out_of_memory_as_memory_error() -> Iterator[None]:
    """Inside the block, torch failing for want of memory (CUDA's torch.OutOfMemoryError, the CPU
    allocator's plain RuntimeError that says so) is raised as MemoryError, which the scripts report
    as one line, exit 1; the estimate above makes this rare, not impossible (other processes)."""
    try:
        yield
    except RuntimeError as error:
        if isinstance(error, torch.OutOfMemoryError) or "can't allocate memory" in str(error):
            raise MemoryError(str(error)) from None
        raise

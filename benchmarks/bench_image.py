"""Training throughput of the image track: images/s in float32 vs bf16 autocast + channels_last.

Why: on CUDA the image trainer (`emergent_frl/vision/trainer.py`) runs the forward pass under bf16
autocast with the model and its inputs in channels_last memory format (`TrainConfig.amp`,
`.channels_last`, both on by default), optionally `torch.compile`d (`.compile`). This measures what
that buys on the machine at hand, one training step exactly as the trainer takes it:

  (a) fp32           float32, default (NCHW) memory format: what the trainer runs on a CPU
  (b) bf16 + CL      bf16 autocast, channels_last model and inputs: what it runs on CUDA
  (c) (b) + compile  (b) with the model under torch.compile (only with --compile)

The step is the trainer's: its optimizer (`make_optimizer`: SGD, momentum 0.9, weight decay 1e-4,
on all parameters), its loss (cross-entropy on float32 logits, label smoothing 0.1), inputs
converted to channels_last inside the step, zero_grad(set_to_none=True), the loss and correct
counts summed on the device (no host sync in the loop). The model comes from our own builder
(`build_model`, the reference initialization; `--stem cifar` for small images). The inputs are
one random batch made on the device once, so this times the model's training step alone: no
dataset (none is downloaded), no augmentation, no data loading. cuDNN and TF32 settings are left
at torch's defaults, as the trainer leaves them (printed below; `--cudnn-benchmark` to try it).

Timing: warm-up steps (and compilation) first, then a probe of a few steps estimates the step time,
then N steps filling about --seconds run between two device synchronizations. "TFLOP/s" counts
the matmul/conv FLOPs of one training step (torch.utils.flop_counter, forward + backward) per image.
It measures; it asserts nothing. A variant that fails (out of memory, no compiler) prints one line
and the others still run; the exit status is then 1.

    python benchmarks/bench_image.py [--device auto|cpu|cuda] [--arch resnet18] [--batch-size 256]
                                     [--image-size 224] [--stem imagenet|cifar] [--num-classes 1000]
                                     [--seconds 5] [--warmup 10] [--compile] [--cudnn-benchmark]
    python benchmarks/bench_image.py --device cpu --batch-size 8 --image-size 32 --seconds 1  # CPU smoke
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runs from a checkout, installed or not
from emergent_frl.devices import DeviceError, machine_device  # noqa: E402
from emergent_frl.vision.models import ARCHITECTURES, STEMS, build_model, validate_model_args  # noqa: E402
from emergent_frl.vision.trainer import TrainConfig, make_optimizer  # noqa: E402

VARIANTS = {  # name: (bf16 autocast, channels_last, torch.compile)
    "(a) fp32": (False, False, False),
    "(b) bf16 + CL": (True, True, False),
    "(c) (b) + compile": (True, True, True),
}
PROBE_STEPS = 3


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work: CUDA runs asynchronously, so a host clock read without
    this measures how fast kernels are queued, not how fast they run."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class TrainStep:
    """One training step of the image trainer (GenerationTrainer.train_epoch's loop body)."""

    def __init__(self, args, device: torch.device, amp: bool, channels_last: bool, compile: bool):
        generator = torch.Generator().manual_seed(0)
        self.model = build_model(args.arch, args.num_classes, image_size=args.image_size, stem=args.stem,
                                 generator=generator).to(device)
        self.channels_last = channels_last
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.model.train()
        self.config = TrainConfig(batch_size=args.batch_size, amp=amp, channels_last=channels_last, compile=compile)
        self.optimizer = make_optimizer(self.model, self.config)
        self.forward = torch.compile(self.model) if compile else self.model
        self.device, self.amp = device, amp
        # one random batch on the device, NCHW as the trainer's datasets hand it over
        self.images = torch.randn(args.batch_size, 3, args.image_size, args.image_size, generator=generator).to(device)
        self.labels = torch.randint(args.num_classes, (args.batch_size,), generator=generator).to(device)
        self.loss_sum = torch.zeros((), device=device)
        self.correct = torch.zeros((), device=device, dtype=torch.long)

    def __call__(self) -> None:
        images = self.images
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            logits = self.forward(images)
        loss = F.cross_entropy(logits.float(), self.labels, label_smoothing=self.config.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.loss_sum += loss.detach() * self.labels.shape[0]
        self.correct += (logits.argmax(1) == self.labels).sum()


def seconds_per_step(step: TrainStep, device: torch.device, seconds: float, warmup: int) -> float:
    """Warm up, estimate the step time from a short probe, then time N steps filling `seconds`."""
    for _ in range(warmup):
        step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(PROBE_STEPS):
        step()
    synchronize(device)
    probe = (time.perf_counter() - start) / PROBE_STEPS
    steps = max(PROBE_STEPS, math.ceil(seconds / max(probe, 1e-6)))
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return (time.perf_counter() - start) / steps


def flops_per_image(args, device: torch.device) -> float:
    """Matmul/conv FLOPs of one float32 training step (forward + backward), per image."""
    model = build_model(args.arch, args.num_classes, image_size=args.image_size, stem=args.stem).to(device)
    images = torch.randn(2, 3, args.image_size, args.image_size, device=device)
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(images), torch.zeros(2, dtype=torch.long, device=device)).backward()
    return counter.get_total_flops() / 2


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return (f"{torch.cuda.get_device_name(device)} ({props.total_memory / 2**30:.0f} GiB, "
                f"{props.multi_processor_count} SMs, capability {props.major}.{props.minor}), "
                f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")
    return f"CPU: {platform.processor() or platform.machine()}, {torch.get_num_threads()} thread(s)"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto (CUDA when available, else cpu), cpu, cuda, cuda:N")
    parser.add_argument("--arch", default="resnet18", choices=ARCHITECTURES, help="model (default resnet18)")
    parser.add_argument("--batch-size", type=int, default=256, help="images per step (default 256)")
    parser.add_argument("--image-size", type=int, default=224, help="square images, pixels (default 224; 32: CIFAR)")
    parser.add_argument("--stem", choices=STEMS, default=None,
                        help="ResNet stem (default: cifar below 64 px, else imagenet)")
    parser.add_argument("--num-classes", type=int, default=1000, help="output classes (default 1000)")
    parser.add_argument("--seconds", type=float, default=5.0, help="timed seconds per variant (default 5)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps per variant first (default 10)")
    parser.add_argument("--compile", action="store_true", help="also time (c): (b) under torch.compile")
    parser.add_argument("--cudnn-benchmark", action="store_true",
                        help="torch.backends.cudnn.benchmark = True (the trainer leaves it off)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args(argv)
    try:
        device = machine_device(args.device, kinds=("cpu", "cuda"))
    except DeviceError as error:
        parser.error(f"--device {error}")
    if args.stem is None:
        args.stem = "cifar" if args.image_size < 64 and args.arch.startswith("resnet") else "imagenet"
    try:
        validate_model_args(args.arch, stem=args.stem, image_size=args.image_size)
    except ValueError as error:
        parser.error(str(error))
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.backends.cudnn.benchmark = args.cudnn_benchmark

    print(f"device: {describe(device)}")
    print(f"torch {torch.__version__}, Python {platform.python_version()}; cudnn.benchmark "
          f"{torch.backends.cudnn.benchmark}, TF32 conv {torch.backends.cudnn.allow_tf32}, "
          f"TF32 matmul {torch.backends.cuda.matmul.allow_tf32}")
    flops = flops_per_image(args, device)
    print(f"model: {args.arch}, {args.stem} stem, {args.num_classes} classes; batch {args.batch_size} x 3 x "
          f"{args.image_size} x {args.image_size}; {flops / 1e9:.2f} GFLOP per image per training step; "
          f"SGD + cross-entropy as the image trainer; {args.warmup} warm-up steps, ~{args.seconds:g} s timed")
    if device.type == "cpu":
        print("note: on a CPU the image trainer runs (a); (b) is timed here to test the code path")
    print()
    print(f"{'variant':20s} {'ms/step':>9s} {'images/s':>10s} {'TFLOP/s':>8s} {'vs (a)':>7s}")
    rates: dict[str, float] = {}
    failed = False
    for name, (amp, channels_last, compile) in VARIANTS.items():
        if compile and not args.compile:
            continue
        try:
            step = TrainStep(args, device, amp, channels_last, compile)
            seconds = seconds_per_step(step, device, args.seconds, args.warmup)
        except Exception as error:  # noqa: BLE001  (report and go on: OOM, no compiler, ...)
            first_line = (str(error).strip().splitlines() or [""])[0][:200]
            print(f"{name:20s} failed: {type(error).__name__}: {first_line}")
            failed = True
            continue
        finally:
            step = None
            if device.type == "cuda":
                torch.cuda.empty_cache()
        rates[name] = args.batch_size / seconds
        versus = rates[name] / rates["(a) fp32"] if "(a) fp32" in rates else math.nan
        print(f"{name:20s} {seconds * 1e3:9.2f} {rates[name]:10.1f} {rates[name] * flops / 1e12:8.2f} {versus:6.2f}x",
              flush=True)
    print()
    for name in ("(b) bf16 + CL", "(c) (b) + compile"):
        if name in rates and "(a) fp32" in rates:
            print(f"{name} / (a) fp32: {rates[name] / rates['(a) fp32']:.2f}x images/s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

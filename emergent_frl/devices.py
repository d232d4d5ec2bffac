"""Which devices this machine has, and the one check of a `--device` value both tracks use: a name
torch does not know, a kind of device the machine lacks (mps on Linux, cuda on a CPU machine) or an
index past its devices (cpu:5, cuda:9) is refused before any work, with what the machine allows."""

from __future__ import annotations

import torch

ALL_KINDS = ("cpu", "cuda", "mps", "xpu")


def device_counts(kinds: tuple[str, ...] = ALL_KINDS) -> dict[str, int]:
    """How many devices of each kind there are here (0: none)."""
    xpu = getattr(torch, "xpu", None)
    counts = {"cpu": 1,
              "cuda": torch.cuda.device_count() if torch.cuda.is_available() else 0,
              "mps": 1 if torch.backends.mps.is_available() else 0,
              "xpu": xpu.device_count() if xpu is not None and xpu.is_available() else 0}
    return {kind: counts[kind] for kind in kinds}


def allowed_devices(kinds: tuple[str, ...] = ALL_KINDS, auto: bool = True) -> str:
    """The device names this machine accepts, e.g. 'auto, cpu, cuda, cuda:0..1'."""
    names = ["auto"] if auto else []
    for kind, count in device_counts(kinds).items():
        if count:
            names.append(kind)
        if count and kind != "cpu":
            names.append(f"{kind}:0" if count == 1 else f"{kind}:0..{count - 1}")
    return ", ".join(names)


class DeviceError(ValueError):
    """A device name this machine cannot run: `reason` says why and what it allows."""

    def __init__(self, name: object, reason: str):
        self.name, self.reason = name, reason
        super().__init__(f"{name!r}: {reason}")


def machine_device(name: object, kinds: tuple[str, ...] = ALL_KINDS, auto: bool = True) -> torch.device:
    """The torch device `name` means here ('auto': CUDA when available, else the CPU)."""
    allowed = f"allowed on this machine: {allowed_devices(kinds, auto)}"
    if auto and name == "auto":
        return torch.device("cuda" if "cuda" in kinds and torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name) if isinstance(name, str) else None
    except (RuntimeError, ValueError, TypeError):
        device = None
    if device is None:
        raise DeviceError(name, f"not a device; {allowed}")
    if device.type not in kinds:
        raise DeviceError(name, f"runs on {' or '.join(kinds)} devices only; {allowed}")
    count = device_counts(kinds)[device.type]
    if count == 0:
        raise DeviceError(name, f"this machine has no {device.type} device; {allowed}")
    if device.index is not None and device.index >= count:
        raise DeviceError(name, f"this machine has {count} {device.type} device{'s' * (count > 1)}; {allowed}")
    return device

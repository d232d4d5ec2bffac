"""`torch.compile` for the batched step, with an "auto" setting that falls back to eager.

Why: on a CPU one run's step is a few hundred small kernels; inductor fuses the elementwise work
and, with the gradients in the same graph, cuts one run's step by more than half (docs/RESULTS.md,
Speed), which a hand-written backward through time did not. Compilation needs a working backend
(a C++ compiler on CPU, Triton on CUDA), which not every machine has, so "auto" tries it once and
otherwise trains eager with a warning.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any, Callable

import torch

MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")  # torch.compile's
COMPILE_CHOICES = f"False, True, 'auto' or a torch.compile mode {list(MODES)}"


def compile_mode(compile: bool | str) -> tuple[bool, str | None, bool]:
    """(compile at all, torch.compile mode, fall back to eager on failure) for a `compile` value."""
    if compile is False or compile is None:
        return False, None, False
    if compile is True:
        return True, None, False
    if compile == "auto":
        return True, None, True
    if compile in MODES:
        return True, compile, False
    raise ValueError(f"compile={compile!r}: must be {COMPILE_CHOICES}")


# Compiling the training step costs a warm-up (about 3 s of CPU with inductor's cache warm, about
# 25 s with it cold, on a 2-core CPU for the default game) and then saves part of every step: about
# 1.3 ms of the default game's 2.3 ms eager iteration, about 2.3 ms of the paper preset's 4.3. With
# a cold cache (a newcomer's first run) that pays from about 20,000 run-iterations (iterations x
# seeds) on, for one run or many; below this many, "auto" trains eager (docs/RESULTS.md, Speed,
# "When compiling pays").
COMPILE_PAYS_FROM = 20_000


def compile_pays(run_iterations: int) -> bool:
    """Whether compiling is worth its warm-up for `run_iterations` (iterations x seeds) of work.
    Decided from the size of the work alone, never from timings, so a seed still fixes the run."""
    return run_iterations >= COMPILE_PAYS_FROM


def resolve_auto(compile: bool | str, run_iterations: int) -> bool | str:
    """A new run's compile setting: "auto" stays "auto" (compile where the machine can) when
    compiling pays for `run_iterations`, else becomes False; other settings are kept. The result
    is what config.json records, so a resumed run trains as it began."""
    if compile == "auto" and not compile_pays(run_iterations):
        return False
    return compile


class _NoCudaRuntimeNote(logging.Filter):
    """Drops torch's "No CUDA runtime is found, using CUDA_HOME=..." note, which a CUDA build of
    torch logs on a machine without a GPU when inductor first loads its C++ toolchain: nothing is
    wrong, and a run's stderr stays for what concerns the run (one line when it fails)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "No CUDA runtime is found" not in record.getMessage()


_CPP_EXTENSION_LOG = logging.getLogger("torch.utils.cpp_extension")
if not any(isinstance(f, _NoCudaRuntimeNote) for f in _CPP_EXTENSION_LOG.filters):
    _CPP_EXTENSION_LOG.addFilter(_NoCudaRuntimeNote())


class MaybeCompiled:
    """`fn`, compiled as `compile` says. With "auto", a failure of the first (compiling) call is
    reported once as a warning and `fn` runs eager from then on; later failures propagate."""

    def __init__(self, fn: Callable[..., Any], compile: bool | str):
        self.fn = fn
        enabled, mode, self.fallback = compile_mode(compile)
        self.compiled = torch.compile(fn, dynamic=False, mode=mode) if enabled else None
        self._first = True

    @property
    def is_compiled(self) -> bool:
        return self.compiled is not None

    def __call__(self, *args: Any) -> Any:
        if self.compiled is None:
            return self.fn(*args)
        if not (self._first and self.fallback):
            return self.compiled(*args)
        try:
            out = self.compiled(*args)
        except Exception as error:  # noqa: BLE001  (any backend failure: no compiler, no Triton, ...)
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
            warnings.warn(f"torch.compile is not usable here ({type(error).__name__}: {first_line}); "
                          "training eager (pass compile=False / --no-compile to skip the attempt)",
                          RuntimeWarning, stacklevel=2)
            self.compiled = None
            return self.fn(*args)
        self._first = False
        return out

"""The language benchmark's measuring helpers: what they read off a profiled step is what ran."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_language.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_language", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Products:
    """A 'step' that runs each kind of matrix product a step can call, including the out= form
    a compiled step uses, whose output shape must not be taken for a factor."""

    runs = 1

    def step(self) -> None:
        a, b = torch.randn(3, 5, 7), torch.randn(3, 7, 11)
        torch.bmm(a, b, out=torch.empty(3, 5, 11))
        torch.bmm(a, b)
        torch.mm(a[0], b[0], out=torch.empty(5, 11))
        torch.mm(a[0], b[0])
        torch.addmm(torch.randn(5, 11), a[0], b[0])
        torch.addmm(torch.randn(11), a[0], b[0], out=torch.empty(5, 11))
        torch.baddbmm(torch.randn(3, 5, 11), a, b)


def test_gemm_shapes_reads_the_two_factors_of_every_form():
    bench = _bench()
    shapes = bench.gemm_shapes(_Products())
    assert shapes == [(3, 5, 7, 11), (3, 5, 7, 11), (1, 5, 7, 11), (1, 5, 7, 11), (1, 5, 7, 11),
                      (1, 5, 7, 11), (3, 5, 7, 11)]


"""Test-wide settings. The models under test are tiny: one intra-op thread is faster than two
(no thread hand-off per op) and keeps timings stable when other processes share the cores."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """Every test starts on one thread, whatever an earlier test's script set (`--threads`)."""
    torch.set_num_threads(1)
    yield

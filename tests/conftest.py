"""Test-wide settings. The models under test are tiny: one intra-op thread is faster than two
(no thread hand-off per op) and keeps timings stable when other processes share the cores."""

import torch

torch.set_num_threads(1)

"""The tiny language game the unit tests train: 9 objects, 16 hidden units, batch 16, a few
milliseconds an iteration, big enough for every code path (two attributes, several candidates)."""

TINY = {"n_attributes": 2, "n_values": 3, "vocab_size": 4, "max_len": 2, "n_candidates": 3,
        "hidden_size": 16, "batch_size": 16, "eval_every": 0}

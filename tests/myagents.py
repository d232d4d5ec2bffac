"""My own agents: an MLP encoder into a GRU speaker, and a GRU listener (docs/own_agents.md)."""
import torch
from torch import nn
from emergent_frl.agents import ReceiverOutput, SenderOutput, categorical_entropy, one_hot, sample_categorical
from emergent_frl.cells import GRUCell  # torch's equations; unlike nn.GRUCell it batches over many seeds

class MlpGruSender(nn.Module):
    def __init__(self, n_inputs: int, vocab_size: int, max_len: int, hidden: int = 64):
        super().__init__()
        self.vocab_size, self.max_len, self.eos, self.channel = vocab_size, max_len, False, "reinforce"
        self.encoder = nn.Sequential(nn.Linear(n_inputs, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
        self.cell, self.head = GRUCell(vocab_size, hidden), nn.Linear(hidden, vocab_size)

    def forward(self, x, generator=None) -> SenderOutput:
        h, symbol, steps = self.encoder(x), None, []  # None: a zero input
        for _ in range(self.max_len):
            h = self.cell(symbol, (h, None))[0]
            log_p = self.head(h).log_softmax(-1)
            choice = sample_categorical(log_p, generator) if self.training else log_p.argmax(-1)
            symbol = one_hot(choice, self.vocab_size, log_p.dtype)
            steps.append((choice, symbol, log_p.gather(-1, choice[:, None])[:, 0], categorical_entropy(log_p)))
        message, symbols, log_p, entropy = (torch.stack(part, 1) for part in zip(*steps))
        return SenderOutput(message, symbols, log_p.sum(1), entropy.sum(1), torch.full_like(message[:, 0], self.max_len))

class GruReceiver(nn.Module):
    def __init__(self, n_inputs: int, vocab_size: int, hidden: int = 64):
        super().__init__()
        self.reader, self.objects = GRUCell(vocab_size, hidden), nn.Linear(n_inputs, hidden)

    def forward(self, symbols, candidates, length=None, generator=None) -> ReceiverOutput:
        state = None  # None: the zero state
        for t in range(symbols.shape[1]): state = self.reader(symbols[:, t], state)  # noqa: E701
        scores = torch.einsum("bh,bkh->bk", state[0], self.objects(candidates))
        log_p = scores.log_softmax(-1)
        choice = sample_categorical(log_p, generator) if self.training else log_p.argmax(-1)
        return ReceiverOutput(scores, choice, log_p.gather(-1, choice[:, None])[:, 0], categorical_entropy(log_p))

def build(config):  # called with the run's LanguageGameConfig; returns (sender, receiver)
    n_inputs = config.space().input_size
    return MlpGruSender(n_inputs, config.vocab_size, config.max_len), GruReceiver(n_inputs, config.vocab_size)

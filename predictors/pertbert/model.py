"""PertBERT networks: a BERT-like encoder over patches of gene values, its pre-training heads, and
the fine-tuning model (condition encoder + expression encoder, summed, then an LSTM or MLP decoder)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class EncoderConfig:
    """Shape of the encoder. Genes are cut into patches of `patch` values; each patch is a token."""

    n_genes: int
    patch: int = 40
    width: int = 64
    layers: int = 2
    heads: int = 4
    ff: int = 128
    dropout: float = 0.0

    @property
    def n_tokens(self) -> int:
        return -(-self.n_genes // self.patch)

    def to_dict(self) -> dict:
        return asdict(self)


class PatchEncoder(nn.Module):
    """Expression (batch, genes) + mask of hidden values -> token states (batch, 1 + tokens, width).

    Each token embeds its patch's visible values and which of them are hidden (so masking is
    explicit), plus a learned position (= gene patch) embedding; token 0 is a [CLS] summary."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.project = nn.Linear(2 * cfg.patch, cfg.width)
        self.position = nn.Parameter(torch.randn(cfg.n_tokens + 1, cfg.width) * 0.02)
        self.cls = nn.Parameter(torch.zeros(1, 1, cfg.width))
        layer = nn.TransformerEncoderLayer(cfg.width, cfg.heads, cfg.ff, cfg.dropout, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.width)

    def patches(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, genes) -> (batch, tokens, patch), zero-padded at the end."""
        pad = self.cfg.n_tokens * self.cfg.patch - x.shape[1]
        if pad:
            x = nn.functional.pad(x, (0, pad))
        return x.view(x.shape[0], self.cfg.n_tokens, self.cfg.patch)

    def forward(self, x: torch.Tensor, hidden: torch.Tensor | None = None) -> torch.Tensor:
        if hidden is None:  # nothing hidden: the flag half of the projection sees zeros, so skip it
            tokens = nn.functional.linear(self.patches(x), self.project.weight[:, : self.cfg.patch], self.project.bias)
        else:
            flags = self.patches(hidden)
            tokens = self.project(torch.cat([self.patches(x * (1.0 - hidden)), flags], dim=-1))
        tokens = torch.cat([self.cls.expand(x.shape[0], -1, -1), tokens], dim=1) + self.position
        return self.norm(self.blocks(tokens))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The [CLS] embedding of fully visible expression (batch, width)."""
        return self.forward(x)[:, 0]


class PretrainHeads(nn.Module):
    """Masked-value regression (per token) plus cell-line, drug and dose heads on [CLS]."""

    def __init__(self, cfg: EncoderConfig, n_cell_lines: int, n_drugs: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.values = nn.Linear(cfg.width, cfg.patch)
        self.cell_line = nn.Linear(cfg.width, n_cell_lines)
        self.drug = nn.Linear(cfg.width, n_drugs)
        self.dose = nn.Linear(cfg.width, 1)

    def forward(self, states: torch.Tensor) -> dict[str, torch.Tensor]:
        cls = states[:, 0]
        values = self.values(states[:, 1:]).reshape(states.shape[0], -1)[:, : self.cfg.n_genes]
        return {"values": values, "cell_line": self.cell_line(cls), "drug": self.drug(cls), "dose": self.dose(cls).squeeze(-1)}


class ConditionEncoder(nn.Module):
    """MLP over [drug representation, cell-type one-hot, log10 dose] -> condition embedding."""

    def __init__(self, drug_dim: int, n_cell_types: int, width: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(drug_dim + n_cell_types + 1, 2 * width), nn.GELU(), nn.Linear(2 * width, width))

    def forward(self, drug: torch.Tensor, cell_type: torch.Tensor, log_dose: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([drug, cell_type, log_dose[:, None]], dim=1))


class LSTMDecoder(nn.Module):
    """Decodes an embedding into `n_out` values in `steps` LSTM steps, one output patch of genes per
    step, each step read out by its own projection of [LSTM state, step input].

    The step input is u_s = v + e_s (v: the projected embedding, e_s: a learned step embedding), so
    its read-out v W_s + e_s W_s is computed as one matrix product of v for all steps plus a
    constant per step, not per step and cell."""

    def __init__(self, width: int, n_out: int, steps: int = 8, hidden: int = 64) -> None:
        super().__init__()
        patch = -(-n_out // steps)
        self.n_out, self.steps, self.hidden = n_out, -(-n_out // patch), hidden
        self.step_embedding = nn.Parameter(torch.randn(self.steps, hidden) * 0.02)
        self.inp = nn.Sequential(nn.Linear(width, hidden), nn.GELU())
        self.lstm = nn.LSTM(hidden, hidden)
        # One output projection per step (gene patch): genes differ, so their read-outs do too.
        self.out_weight = nn.Parameter(torch.randn(self.steps, 2 * hidden, patch) / (2 * hidden) ** 0.5)
        self.out_bias = nn.Parameter(torch.zeros(self.steps, patch))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        v = self.inp(z)
        h, _ = self.lstm(v[None] + self.step_embedding[:, None])  # (steps, batch, hidden)
        w_state, w_input = self.out_weight[:, : self.hidden], self.out_weight[:, self.hidden :]
        constant = self.out_bias + torch.bmm(self.step_embedding[:, None], w_input)[:, 0]  # (steps, patch)
        from_state = torch.baddbmm(constant[:, None], h, w_state)  # (steps, batch, patch)
        from_input = v @ w_input.transpose(0, 1).reshape(self.hidden, -1)  # (batch, steps * patch)
        out = from_input.view(z.shape[0], self.steps, -1) + from_state.transpose(0, 1)
        return out.view(z.shape[0], -1)[:, : self.n_out]


class MLPDecoder(nn.Module):
    """Decodes an embedding into `n_out` values with a two-layer MLP (the paper's Table 3 variant)."""

    def __init__(self, width: int, n_out: int, hidden: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, n_out))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class FixedDrugs(nn.Module):
    """Drug vectors fixed before fine-tuning (one row per drug, e.g. from bulk profiles); not trained."""

    table: torch.Tensor  # a buffer (register_buffer)

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("table", table)

    def forward(self, index: torch.Tensor) -> torch.Tensor:
        return self.table[index]


class LearnedDrugs(nn.Module):
    """One trained vector per training drug (rows 0..n-1); row n stands for any other drug and is the
    mean of the trained rows, so an unseen drug carries no information of its own."""

    def __init__(self, n_drugs: int, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_drugs, dim))  # unit scale, like the standardised bulk vectors

    def forward(self, index: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.weight, self.weight.mean(0, keepdim=True)])[index]


class FineTuneModel(nn.Module):
    """Control cells (encoder genes) + conditions -> change of every single-cell gene.

    The expression embedding ([CLS] of the encoder) of a control cell and the embedding of a condition
    are summed and decoded; the caller adds the change to the control cell, so predicted cells keep
    the heterogeneity of the controls they start from. Cells and conditions are embedded once each
    and paired afterwards, so a control cell serves every condition of its cell type in a batch."""

    def __init__(self, encoder: PatchEncoder, drugs: nn.Module, drug_dim: int, n_cell_types: int, n_out: int,
                 decoder: str, steps: int = 8, hidden: int = 64) -> None:
        super().__init__()
        width = encoder.cfg.width
        self.encoder = encoder
        self.drugs = drugs
        self.condition = ConditionEncoder(drug_dim, n_cell_types, width)
        self.decoder = LSTMDecoder(width, n_out, steps, hidden) if decoder == "lstm" else MLPDecoder(width, n_out)

    def conditions(self, drug: torch.Tensor, cell_type: torch.Tensor, log_dose: torch.Tensor) -> torch.Tensor:
        """Drug indices, cell-type one-hots and log10 doses (C rows) -> condition embeddings (C, width)."""
        return self.condition(self.drugs(drug), cell_type, log_dose)

    def decode(self, cells: torch.Tensor, conditions: torch.Tensor) -> torch.Tensor:
        """Paired expression and condition embeddings (n, width) each -> changes (n, sc genes)."""
        return self.decoder(cells + conditions)

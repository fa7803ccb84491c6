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
    patch: int = 10
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
        if hidden is None:
            hidden = torch.zeros_like(x)
        values = self.patches(x * (1.0 - hidden))
        flags = self.patches(hidden)
        tokens = self.project(torch.cat([values, flags], dim=-1))
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
    """Decodes an embedding into `n_out` values, one output patch per LSTM step."""

    def __init__(self, width: int, n_out: int, patch: int = 25, hidden: int = 128) -> None:
        super().__init__()
        self.n_out, self.steps = n_out, -(-n_out // patch)
        self.step_embedding = nn.Parameter(torch.randn(self.steps, hidden) * 0.02)
        self.inp = nn.Sequential(nn.Linear(width, hidden), nn.GELU())
        self.lstm = nn.LSTM(hidden, hidden, batch_first=True)
        # One output projection per step (gene patch): genes differ, so their read-outs do too.
        self.out_weight = nn.Parameter(torch.randn(self.steps, 2 * hidden, patch) / (2 * hidden) ** 0.5)
        self.out_bias = nn.Parameter(torch.zeros(self.steps, patch))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        u = self.inp(z)[:, None, :] + self.step_embedding[None]
        h, _ = self.lstm(u)
        # Each step reads the LSTM state and its own input, so no patch depends on a long chain only.
        out = torch.einsum("bsh,shp->bsp", torch.cat([h, u], dim=-1), self.out_weight) + self.out_bias
        return out.reshape(z.shape[0], -1)[:, : self.n_out]


class MLPDecoder(nn.Module):
    """Decodes an embedding into `n_out` values with a two-layer MLP (the paper's Table 3 variant)."""

    def __init__(self, width: int, n_out: int, hidden: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, n_out))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class FineTuneModel(nn.Module):
    """Control cell (encoder genes) + condition -> change of every single-cell gene.

    The expression embedding ([CLS] of the encoder) and the condition embedding are summed and
    decoded; the decoder's output is added to the input control cell, so predicted cells keep the
    heterogeneity of the controls they start from."""

    def __init__(self, encoder: PatchEncoder, drug_dim: int, n_cell_types: int, n_out: int, decoder: str) -> None:
        super().__init__()
        width = encoder.cfg.width
        self.encoder = encoder
        self.condition = ConditionEncoder(drug_dim, n_cell_types, width)
        self.decoder = LSTMDecoder(width, n_out) if decoder == "lstm" else MLPDecoder(width, n_out)

    def forward(self, x_enc: torch.Tensor, drug: torch.Tensor, cell_type: torch.Tensor, log_dose: torch.Tensor) -> torch.Tensor:
        z = self.encoder.embed(x_enc) + self.condition(drug, cell_type, log_dose)
        return self.decoder(z)

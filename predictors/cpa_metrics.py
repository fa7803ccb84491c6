"""A faster stand-in for cpa-tools' per-batch R² bookkeeping, with the same values.

cpa-tools 0.8.8 computes `r2_mean` and `r2_var` after every training step, only to log them: it loops
over the batch's (cell type, drug) groups and calls torchmetrics once per group and statistic. At
bench's default shape that loop is more than half of a CPA epoch (profile in docs/baselines.md). The
statistics are computed after the optimiser steps, from tensors the step has finished with, and use no
random numbers, so what the model learns does not depend on them; `fast_r2` computes them for all groups
at once with the same definition (torchmetrics' R² with its near-constant rules, NaN counted as 0,
averaged over groups), so the logged values stay what cpa-tools would log.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

NEAR_ZERO = 1e-4  # torchmetrics' tolerance for a zero residual or total sum of squares


def finite(v: torch.Tensor) -> torch.Tensor:
    """cpa-tools' clean-up of the predicted moments before it averages them."""
    return torch.nan_to_num(v, nan=0.0, posinf=1e3, neginf=-1e3)


def r2_rows(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """R² of each row of `pred` against the same row of `target` (genes along the row), with
    torchmetrics' rules: 1 where the residual is near 0, 0 where only the target is near constant."""
    n = target.shape[1]
    sum_obs = target.sum(1)
    tss = (target * target).sum(1) - sum_obs * (sum_obs / n)
    rss = ((target - pred) ** 2).sum(1)
    has_rss = ~torch.isclose(rss, torch.zeros_like(rss), atol=NEAR_ZERO)
    has_tss = ~torch.isclose(tss, torch.zeros_like(tss), atol=NEAR_ZERO)
    scores = torch.ones_like(rss)
    both = has_rss & has_tss
    scores[both] = 1 - rss[both] / tss[both]
    scores[has_rss & ~has_tss] = 0.0
    return torch.nan_to_num(scores, nan=0.0)


def grouped_r2(module, tensors: dict, inference_outputs: dict, generative_outputs: dict,
               mode: str = "direct") -> tuple[float, float]:
    """cpa-tools' `r2_metric` (mode 'direct', Gaussian likelihood) for every group of the batch at once:
    the mean over groups of the R² of the predicted vs observed per-gene mean, and of the mean
    predicted variance vs the observed (unbiased) variance."""
    from cpa._utils import CPA_REGISTRY_KEYS as KEYS

    x = tensors[KEYS.X_KEY]
    px = generative_outputs["px"]
    mean, var = px.loc, px.scale ** 2
    if KEYS.DEG_MASK_R2 in tensors:
        mask = tensors[KEYS.DEG_MASK_R2]
        x, mean, var = x * mask, mean * mask, var * mask
    with torch.no_grad():
        _, group, counts = torch.unique(tensors[KEYS.CATEGORY_KEY].view(-1), return_inverse=True, return_counts=True)
        size = counts.to(x.dtype)[:, None]

        def group_mean(v: torch.Tensor) -> torch.Tensor:
            return torch.zeros(len(counts), v.shape[1], dtype=v.dtype, device=v.device).index_add_(0, group, v) / size

        x_mean = group_mean(x)
        x_var = group_mean((x - x_mean[group]) ** 2) * size / (size - 1)
        r2_mean = r2_rows(group_mean(finite(mean)), x_mean)
        r2_var = r2_rows(group_mean(finite(var)), x_var)
    return float(r2_mean.double().mean()), float(r2_var.double().mean())


@contextmanager
def fast_r2(module) -> Iterator[None]:
    """Within the block, `module.r2_metric` is `grouped_r2` where the module's likelihood is Gaussian
    (bench's setting); other likelihoods keep cpa-tools' own loop."""
    if module.recon_loss != "gauss":
        yield
        return
    module.r2_metric = lambda *args, **kwargs: grouped_r2(module, *args, **kwargs)
    try:
        yield
    finally:
        del module.r2_metric

"""What a fit spent: its gradient steps and the parameters they trained, counted from torch's
optimisers whatever the predictor's code (cpa-tools, lightning or plain torch).

Every optimiser step taken inside `counting()` is seen by a global post-step hook. The parameters a
fit trained are those any of its optimisers stepped (counted once each). Its gradient steps are the
steps of its main optimisers: those holding at least half as many weights as the largest one, so a
model that also steps small side optimisers each batch (CPA's dosers and adversaries) counts one step
per batch, and a model trained in phases by separate optimisers (CPA_transfer: bulk, then single cell)
counts the steps of both phases. A predictor that trains no torch parameters reports neither.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

MAIN_SHARE = 0.5  # an optimiser is a main one when it holds at least this share of the largest one's weights


@dataclass
class Budget:
    """Steps per optimiser (by identity) and the weights each holds, as counted so far."""

    steps: dict[int, int] = field(default_factory=dict)
    sizes: dict[int, int] = field(default_factory=dict)
    trained: dict[int, int] = field(default_factory=dict)  # parameter identity -> elements
    held: list = field(default_factory=list, repr=False)  # the optimisers seen, so no identity is reused in the block

    def record(self, optimizer) -> None:
        key = id(optimizer)
        if key not in self.sizes:
            self.held.append(optimizer)
            params = [p for group in optimizer.param_groups for p in group["params"]]
            self.sizes[key] = sum(p.numel() for p in params)
            self.trained.update({id(p): p.numel() for p in params})
        self.steps[key] = self.steps.get(key, 0) + 1

    @property
    def gradient_steps(self) -> int | None:
        """Steps of the main optimisers; None when nothing was stepped."""
        if not self.steps:
            return None
        largest = max(self.sizes.values())
        return sum(n for key, n in self.steps.items() if self.sizes[key] >= MAIN_SHARE * largest)

    @property
    def n_parameters(self) -> int | None:
        """Elements of every parameter any optimiser stepped; None when nothing was stepped."""
        return sum(self.trained.values()) if self.trained else None


@contextmanager
def counting() -> Iterator[Budget]:
    """Count the optimiser steps taken in the block (torch imported only when installed)."""
    budget = Budget()
    try:
        from torch.optim.optimizer import register_optimizer_step_post_hook
    except ImportError:
        yield budget
        return
    handle = register_optimizer_step_post_hook(lambda optimizer, args, kwargs: budget.record(optimizer))
    try:
        yield budget
    finally:
        handle.remove()
        budget.held.clear()

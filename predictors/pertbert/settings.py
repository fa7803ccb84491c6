"""PertBERT pre-training settings: which bulk profiles, which tasks, how much masking, in how many
stages; the paper's Table 1 rows and the settings its fine-tuned variants start from."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import torch

from bench.errors import BenchError

DATA_SETS = ("whole", "subset", "transfer")
STAGES = (1, 2)


@contextmanager
def local_seed(seed: int) -> Iterator[None]:
    """Run the block with torch's CPU generator seeded to `seed`, then restore the generator's state:
    what the block draws (module initialisation) depends on `seed` alone, and it takes nothing from
    the draws of whatever runs after it."""
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        yield


@dataclass(frozen=True)
class PretrainSetting:
    """One pre-training configuration: which bulk profiles, which tasks, how much masking, and in how
    many stages (2: masking alone for the first `epochs // 2` epochs, then the four tasks)."""

    data: str
    four_task: bool
    mask: float
    epochs: int = 12
    batch: int = 128
    lr: float = 1e-3
    seed: int = 0
    stages: int = 1

    def __post_init__(self) -> None:
        if self.stages not in STAGES:
            raise BenchError(f"pre-training stages {self.stages}: expected 1 or 2")
        if self.stages == 2 and not self.four_task:
            raise BenchError("two-stage pre-training needs the four tasks (its first stage is the one task)")

    @property
    def label(self) -> str:
        staged = ", two stages" if self.stages == 2 else ""
        return f"{'four' if self.four_task else 'one'}-task {self.mask:.0%} {self.data}{staged}"

    def with_stages(self, stages: int) -> PretrainSetting:
        """This setting pre-trained in `stages` stages; a one-task setting has a single stage whatever
        is asked (masking alone is the first stage), so it keeps one checkpoint."""
        if stages not in STAGES:
            raise BenchError(f"pre-training stages {stages}: expected 1 or 2")
        return replace(self, stages=stages) if self.four_task else self

    def tasks_at(self, epoch: int) -> bool:
        """Whether epoch `epoch` (0-based) trains the cell-line, drug and dose heads."""
        return self.four_task and (self.stages == 1 or epoch >= self.epochs // 2)


# The paper's Table 1 rows, and the settings its fine-tuned variants start from.
TABLE1 = {
    "one_task_80_subset": PretrainSetting("subset", four_task=False, mask=0.80),
    "one_task_15_whole": PretrainSetting("whole", four_task=False, mask=0.15),
    "four_task_15_subset": PretrainSetting("subset", four_task=True, mask=0.15),
}
VARIANT_SETTINGS = {
    "whole": TABLE1["one_task_15_whole"],
    "subset": TABLE1["four_task_15_subset"],
    "transfer": PretrainSetting("transfer", four_task=True, mask=0.15),
}

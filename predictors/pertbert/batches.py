"""Fine-tuning epochs: which treated cells, control cells and conditions each optimiser step uses.

An epoch covers every treated training cell exactly once, as a target. A condition's cells are
shuffled and cut into near-equal chunks of at most `cells_per_chunk`; chunks are shuffled and
grouped into steps of `chunks_per_step`. A step encodes one pool of control cells per cell type it
touches, shared by all that type's chunks; each chunk pairs every target cell with its own pool
cell (distinct controls unless the cell type has fewer controls than the chunk has cells), so it
predicts as many cells as it matches. Pools are read from a per-cell-type stream of shuffled
controls, sized so that every control cell is encoded at least once per epoch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Step:
    """One optimiser step. `chunk_condition` (B,) names each chunk's condition; `targets` (B, m) are
    treated-cell rows and `sources` (B, m) pool positions, valid where `valid` (B, m); `pool` holds
    the control rows to encode."""

    chunk_condition: np.ndarray
    targets: np.ndarray
    sources: np.ndarray
    valid: np.ndarray
    pool: np.ndarray


@dataclass(frozen=True)
class Epoch:
    steps: list[Step]
    cells: int  # distinct training cells used: every treated cell plus the controls encoded


class EpochPlanner:
    """Plans epochs over fixed training cells (all indices are rows of the caller's arrays).

    `cell_condition[i]` is the condition of treated cell i; `condition_type[c]` the cell type of
    condition c; `controls[t]` the control rows of cell type t."""

    def __init__(self, cell_condition: np.ndarray, condition_type: np.ndarray, controls: list[np.ndarray],
                 cells_per_chunk: int, chunks_per_step: int) -> None:
        counts = np.bincount(cell_condition, minlength=len(condition_type))
        if (counts == 0).any():
            raise ValueError("every condition needs at least one treated cell")
        self.cell_condition, self.condition_type, self.controls = cell_condition, condition_type, controls
        self.counts = counts
        self.chunks = -(-counts // cells_per_chunk)  # chunks per condition
        self.first_chunk = np.concatenate([[0], np.cumsum(self.chunks)[:-1]])
        self.first_cell = np.concatenate([[0], np.cumsum(counts)[:-1]])
        self.chunks_per_step = chunks_per_step

    def epoch(self, rng: np.random.Generator) -> Epoch:
        # Treated cells grouped by condition, shuffled within it, then numbered into chunks.
        shuffled = rng.permutation(len(self.cell_condition))
        cells = shuffled[np.argsort(self.cell_condition[shuffled], kind="stable")]
        cond = self.cell_condition[cells]
        rank = np.arange(len(cells)) - self.first_cell[cond]
        chunk_of_cell = self.first_chunk[cond] + rank * self.chunks[cond] // self.counts[cond]
        n_chunks = int(self.chunks.sum())
        size = np.bincount(chunk_of_cell, minlength=n_chunks)
        start = np.concatenate([[0], np.cumsum(size)[:-1]])
        chunk_condition = np.repeat(np.arange(len(self.counts)), self.chunks)

        groups = np.array_split(rng.permutation(n_chunks), -(-n_chunks // self.chunks_per_step))
        group_types = [np.unique(self.condition_type[chunk_condition[g]]) for g in groups]
        streams = self._control_streams(rng, group_types, int(size.max()))
        steps, used = [], []
        for group, types in zip(groups, group_types):
            m = int(size[group].max())
            offsets = np.arange(m)
            valid = offsets[None, :] < size[group][:, None]
            targets = cells[np.where(valid, start[group][:, None] + offsets, 0)]
            pools = [streams[t].take() for t in types]
            pool_start = np.concatenate([[0], np.cumsum([len(p) for p in pools])[:-1]])
            slot = np.searchsorted(types, self.condition_type[chunk_condition[group]])
            # Each chunk draws distinct pool cells of its own type: a random order of that pool's slots.
            widths = np.array([len(p) for p in pools])[slot]
            keys = rng.random((len(group), int(widths.max())))
            keys[np.arange(keys.shape[1])[None, :] >= widths[:, None]] = np.inf
            sources = pool_start[slot][:, None] + np.argsort(keys, axis=1)[:, :m]
            pool = np.concatenate(pools)
            steps.append(Step(chunk_condition[group], targets, np.where(valid, sources, 0), valid, pool))
            used.append(pool)
        return Epoch(steps, len(cells) + len(np.unique(np.concatenate(used))))

    def _control_streams(self, rng: np.random.Generator, group_types: list[np.ndarray], largest_chunk: int) -> dict:
        """Per cell type, a stream of shuffled controls cut into equal pools: at least as large as the
        largest chunk, and large enough that the epoch's pools of that type cover all its controls."""
        steps_of_type = np.bincount(np.concatenate(group_types), minlength=len(self.controls))
        streams = {}
        for t in np.flatnonzero(steps_of_type):
            rows = self.controls[t]
            if len(rows) == 0:
                raise ValueError(f"cell type {t} has no control cells")
            size = max(largest_chunk, -(-len(rows) // steps_of_type[t]))
            streams[t] = _Stream(rng, rows, size)
        return streams


class _Stream:
    """Consecutive pools of `size` rows from back-to-back shuffles of `rows`. A pool that spans two
    shuffles takes, from the second, rows the first did not leave over, so it repeats no row (when
    `size` <= len(rows)); the stream's first len(rows) rows are a whole shuffle."""

    def __init__(self, rng: np.random.Generator, rows: np.ndarray, size: int) -> None:
        self.rng, self.rows, self.size = rng, rows, size
        self.buffer = np.empty(0, dtype=rows.dtype)

    def take(self) -> np.ndarray:
        while len(self.buffer) < self.size:
            shuffle = self.rng.permutation(self.rows)
            left_over = np.isin(shuffle, self.buffer)
            self.buffer = np.concatenate([self.buffer, shuffle[~left_over], shuffle[left_over]])
        pool, self.buffer = self.buffer[: self.size], self.buffer[self.size :]
        return pool

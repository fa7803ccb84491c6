"""Table 1 (PertBERT pre-training on the bulk set) as a table: its columns, units and markdown.

`bench pretrain` computes the table (bench/commands/pretrain.py) and writes it as CSV; the published
leaderboard's overview renders those files (bench/publish.py); both use the definitions here.
"""

from __future__ import annotations

import pandas as pd

COLUMNS = ["methods", "mask_percentage", "dataset", "stages", "cell_acc", "drug_acc", "dose_rmse", "mask_rmse", "profiles",
           "held_out", "held_out_conditions"]
METRICS = ["cell_acc", "drug_acc", "dose_rmse", "mask_rmse", "profiles", "held_out", "held_out_conditions"]
UNITS = "mask_rmse: standardised units (per-gene z-scores over the bulk set); dose_rmse: log10(nM + 1)"


def markdown(frame: pd.DataFrame) -> str:
    """The table in markdown; a table written before a column existed shows the columns it has."""
    columns = [c for c in COLUMNS if c in frame]

    def fmt(col: str, v) -> str:
        if v is None or pd.isna(v):
            return "-"
        return f"{100 * v:.2f}%" if col.endswith("_acc") else (f"{v:.3f}" if isinstance(v, float) else str(v))

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(c, row[c]) for c in columns) + " |" for _, row in frame.iterrows()]
    return "\n".join(lines)

"""PertBERT checkpoints on disk: tensors only in `NAME.pt` (read with `torch.load(weights_only=True)`,
so a checkpoint cannot run code), everything else in a JSON manifest `NAME.pt.json` that also records
the sha256 of the tensor file. A checkpoint is read only when its tensors hash to the recorded value;
anything else is `CheckpointUnusable` with the reason, and the caller trains it again."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import torch

from bench.io import atomic_write_bytes, atomic_write_json

FORMAT = 1  # the manifest's `format`: bump when the layout changes (older checkpoints are trained again)
TENSOR_GROUPS = ("encoder", "heads")  # state dicts stored under '<group>.<name>'
ARRAYS = ("mean", "std")  # numpy arrays stored as tensors
SEP = "."


class CheckpointUnusable(Exception):
    """A checkpoint that is missing, from another format, damaged or tampered with; the message says which."""


def manifest_path(path: Path) -> Path:
    """The JSON manifest beside a checkpoint's tensor file."""
    return path.with_name(path.name + ".json")


def write_checkpoint(path: Path, state: dict) -> None:
    """Write `state` (Pretrained.state(): state dicts, arrays and plain values) as tensors plus a
    manifest holding the rest and the tensors' sha256; the manifest is written last."""
    tensors = {f"{group}{SEP}{name}": t.detach().cpu() for group in TENSOR_GROUPS for name, t in state[group].items()}
    tensors.update({name: torch.from_numpy(np.ascontiguousarray(state[name])) for name in ARRAYS})
    buf = io.BytesIO()
    torch.save(tensors, buf)
    data = buf.getvalue()
    atomic_write_bytes(path, data)
    plain = {k: v for k, v in state.items() if k not in (*TENSOR_GROUPS, *ARRAYS)}
    atomic_write_json(manifest_path(path), {"format": FORMAT, "sha256": hashlib.sha256(data).hexdigest(),
                                            **{k: _plain(v) for k, v in plain.items()}})


def read_checkpoint(path: Path) -> dict:
    """The state a checkpoint holds, after checking its manifest and the sha256 of its tensors."""
    manifest = manifest_path(path)
    try:
        meta = json.loads(manifest.read_text())
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise CheckpointUnusable(f"{Path(exc.filename).name} is missing (written by an older bench, or removed)") from None
    except (OSError, ValueError) as exc:
        raise CheckpointUnusable(f"{manifest.name} cannot be read ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointUnusable(f"{manifest.name} is not a format {FORMAT} manifest")
    digest = hashlib.sha256(data).hexdigest()
    if digest != meta.get("sha256"):
        raise CheckpointUnusable(f"its tensors hash to sha256 {digest[:16]}..., the manifest records {str(meta.get('sha256'))[:16]}... "
                                 "(changed since it was written)")
    try:
        tensors = torch.load(io.BytesIO(data), weights_only=True)  # the bytes just hashed: no second read
    except Exception as exc:  # noqa: BLE001  torch raises many types for a bad file
        raise CheckpointUnusable(f"its tensors cannot be read ({type(exc).__name__})") from None
    state = {k: v for k, v in meta.items() if k not in ("format", "sha256")}
    for group in TENSOR_GROUPS:
        state[group] = {k.split(SEP, 1)[1]: t for k, t in tensors.items() if k.startswith(group + SEP)}
    try:
        state.update({name: tensors[name].numpy() for name in ARRAYS})
    except KeyError as exc:
        raise CheckpointUnusable(f"its tensors lack '{exc.args[0]}'") from None
    return state


def _plain(value):
    """A manifest value as JSON writes it: numpy scalars and arrays as Python numbers and lists."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value.item() if isinstance(value, np.generic) else value

"""The local side of `bench fetch`: hashing files, writing raw chunks, unpacking a gzip download,
reading a published checksum list."""

from __future__ import annotations

import errno
import gzip
import hashlib
import os
import shutil
import sys
import tempfile
import zlib
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from bench.errors import BenchError
from bench.io import file_mode

CHUNK = 1 << 20


def write_chunk(out, chunk: bytes) -> None:
    """Write all of `chunk` to the unbuffered file `out` (raw writes may be partial)."""
    view = memoryview(chunk)
    while view:
        view = view[out.write(view):]


def refuse_link(path: Path) -> None:
    """A one-line error when `path` is a symlink (or another non-file): downloads are written only to
    plain files bench creates, never through a link someone planted."""
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise BenchError(f"{path}: is a symlink or not a plain file; bench fetch writes only plain files it creates "
                         "(remove it and run the command again)")


def open_part(path: Path):
    """A download's `.part` file opened for writing (created when missing, its bytes kept to resume
    from), never through a symlink (O_NOFOLLOW), with the umask's mode."""
    refuse_link(path)
    try:
        return open(path, "r+b", buffering=0, opener=lambda name, flags: _no_follow(name, flags | os.O_CREAT))
    except OSError as exc:
        raise BenchError(f"cannot write {path}: {exc.strerror or exc}") from None


def _no_follow(path: str, flags: int) -> int:
    """`open`'s opener that never follows a symlink at `path`."""
    return os.open(path, flags | os.O_NOFOLLOW, file_mode())


def gunzip(part: Path, final: Path, unpacked_size: int | None, log: Callable[[str], None]) -> tuple[int, str]:
    """Stream the gzip file `part` into a new temporary file beside `final` (unpredictable name,
    O_EXCL), rename it to `final`; (bytes, sha256) of the result."""
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent)
    os.fchmod(fd, file_mode())
    os.close(fd)
    out_path = Path(name)
    digest, written = hashlib.sha256(), 0
    log(f"{final.name}: unpacking {part.name.removesuffix('.part')}")
    try:
        with open(part, "rb") as raw, gzip.GzipFile(fileobj=raw) as unpacked, \
                open(out_path, "wb", buffering=0, opener=_no_follow) as out, \
                tqdm(total=part.stat().st_size, unit="B", unit_scale=True, unit_divisor=1024,
                     desc=f"unpacking {final.name}", file=sys.stderr, leave=False) as bar:
            while chunk := unpacked.read(CHUNK):
                write_chunk(out, chunk)
                digest.update(chunk)
                written += len(chunk)
                bar.update(raw.tell() - bar.n)
    except (OSError, EOFError, zlib.error) as exc:  # EOFError, zlib.error: a truncated or damaged stream
        done = out_path.stat().st_size if out_path.exists() else written
        free = shutil.disk_usage(final.parent).free
        out_path.unlink(missing_ok=True)
        served = part.name.removesuffix(".part")
        if getattr(exc, "errno", None) == errno.ENOSPC:
            needed = f"about {unpacked_size}" if unpacked_size else f"more than {done}"
            raise BenchError(f"disk full unpacking {final}: {needed} bytes needed, {free} free; "
                             f"the download {part.name} stays for the next call") from None
        if isinstance(exc, (gzip.BadGzipFile, EOFError, zlib.error)):
            part.unlink()
            raise BenchError(f"{served} is not a valid gzip file ({exc}); the download was removed") from None
        raise BenchError(f"cannot unpack {part}: {exc.strerror or exc}") from None
    os.replace(out_path, final)
    return written, digest.hexdigest()


def read_sums(path: Path) -> dict[str, str]:
    """{file name: "sha512:hex"} from a GNU sha512sum list ('HEX  NAME' or 'HEX *NAME' lines)."""
    sums = {}
    for line in path.read_text(errors="replace").splitlines():
        digest, _, name = line.strip().partition(" ")
        name = os.path.basename(name.strip().lstrip("*"))
        if len(digest) == 128 and name:
            sums[name] = "sha512:" + digest.lower()
    if not sums:
        raise BenchError(f"{path} holds no sha512 checksums; remove it to download it again")
    return sums


def hashers(algos: list[str]) -> dict:
    """Fresh hash objects for `algos`."""
    return {a: hashlib.new(a, usedforsecurity=False) if a == "md5" else hashlib.new(a) for a in algos}


def hash_file(path: Path, algos: list[str], desc: str, objects: bool = False) -> dict:
    """Hash the file at `path` (with a progress bar); hex digests, or the hash objects to go on with."""
    hashes = hashers(algos)
    with open(path, "rb") as fh, tqdm(total=path.stat().st_size, unit="B", unit_scale=True, unit_divisor=1024,
                                     desc=desc, file=sys.stderr, leave=False) as bar:
        while chunk := fh.read(CHUNK):
            for h in hashes.values():
                h.update(chunk)
            bar.update(len(chunk))
    return hashes if objects else {a: h.hexdigest() for a, h in hashes.items()}

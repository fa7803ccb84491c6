"""A verified, resumable HTTP downloader for the public data sets of bench/sources.py.

Sources (bench/sources.py) are short lists of files: URL, final file name, expected checksum where
one is published, and whether the file is served gzipped. Bytes stream into `NAME.part`; a dropped connection is
resumed with an HTTP Range request (within the call, and again on the next call); the complete
download is checked against the published checksum, or, where none exists, its sha256 is recorded in
`bench-fetch.json` beside the files on the first download and checked on every later call. Only a
complete, verified file is renamed (os.replace) to its final name, so that name never holds a
partial or wrong file. The transfer is bench/fetch_http.py, hashing and unpacking bench/fetch_files.py.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from bench.errors import BenchError, closest
from bench.fetch_files import gunzip, hash_file, read_sums
from bench.fetch_http import download
from bench.io import atomic_write_text, writable_dir
from bench.sources import RemoteFile, Source, default_root

MANIFEST = "bench-fetch.json"


def fetch_source(source: Source, root: Path | None = None, *, only: str | None = None, url: str | None = None,
                 checksum: str | None = None, log: Callable[[str], None] | None = None) -> list[Path]:
    """Download (or confirm) the files of `source` into ROOT/NAME and return their final paths.

    `only` restricts the call to one file (final or served name); `url` replaces that file's location
    (plain http is then accepted, as the user typed it); `checksum` ("algorithm:hex") replaces its
    expected checksum. Files already present and matching the manifest cost no HTTP request.
    """
    log = log or (lambda line: tqdm.write(line, file=sys.stderr))  # above any progress bar
    files = _select(source, only, url, checksum)
    folder = (root or default_root()) / source.name
    writable_dir(folder, "--dest")
    manifest = Manifest(folder / MANIFEST, source.name)
    published: dict[str, str] = {}
    if source.checksums is not None and any(f.checksum is None for f in files) and checksum is None:
        sums = _fetch_file(source.checksums, folder, manifest, None, typed=False, log=log)
        published = read_sums(sums)
        log(f"{sums.name}: the publisher's checksum list, trusted as served over HTTPS (nothing signs it); "
            f"its sha256 is recorded in {manifest.path.name} and checked on later calls")
    paths = []
    for remote in files:
        expected = checksum or remote.checksum or published.get(remote.served_name)
        if expected is None and published:
            log(f"{remote.served_name}: not listed in {source.checksums.name if source.checksums else 'the checksum list'}, "
                "so taken unverified; its sha256 is recorded on download and checked on later calls")
        paths.append(_fetch_file(remote, folder, manifest, expected, typed=url is not None, log=log))
    return paths


def _select(source: Source, only: str | None, url: str | None, checksum: str | None) -> list[RemoteFile]:
    """The files this call fetches: all, or the one `only` names, with --url/--sha256 applied to it."""
    files = list(source.files)
    if only is not None:
        files = [f for f in files if only in (f.name, f.served_name)]
        if not files:
            names = [f.name for f in source.files]
            raise BenchError(f"{source.name} has no file '{only}'{closest(only, names)}; its files: {', '.join(names)}")
    if (url is not None or checksum is not None) and len(files) > 1:
        option = "--url" if url is not None else "--sha256"
        raise BenchError(f"{source.name} has {len(files)} files: {option} needs --file NAME to say which one it is for")
    if url is not None:
        files = [RemoteFile(url, f.name, f.checksum, f.gunzip, f.size, f.unpacked_size) for f in files]
    return files


class Manifest:
    """bench-fetch.json beside the files: url, bytes, sha256 and date of each verified final file."""

    def __init__(self, path: Path, source: str) -> None:
        self.path = path
        self.data: dict = {"source": source, "files": {}}
        if path.exists():
            try:
                self.data = json.loads(path.read_text())
                self.data["files"] = dict(self.data.get("files", {}))
            except (ValueError, AttributeError, OSError) as exc:
                raise BenchError(f"cannot read {path} ({exc}); delete it to check the files again") from None

    def get(self, name: str) -> dict | None:
        """The entry of final file `name`, or None."""
        return self.data["files"].get(name)

    def put(self, name: str, entry: dict) -> None:
        """Record `entry` for `name` and write the manifest atomically."""
        self.data["files"][name] = entry
        atomic_write_text(self.path, json.dumps(self.data, indent=2, sort_keys=True) + "\n")  # never through a planted file


def _fetch_file(remote: RemoteFile, folder: Path, manifest: Manifest, expected: str | None, *,
                typed: bool, log: Callable[[str], None]) -> Path:
    """Make FOLDER/NAME a complete, verified copy of `remote`; no HTTP request when it already is."""
    final = folder / remote.name
    if final.exists():
        _confirm(final, remote, manifest, expected, log)
        return final
    algo = expected.split(":")[0] if expected else "sha256"
    part = folder / (remote.served_name + ".part")
    size, digests = download(remote.url, part, sorted({"sha256", algo}), typed=typed,
                             extra=remote.unpacked_size or 0, log=log)
    got = f"{algo}:{digests[algo]}"
    if expected and got != expected:
        part.unlink(missing_ok=True)
        raise BenchError(f"checksum mismatch for {remote.served_name}: expected {expected}, got {got} "
                         f"(from {remote.url}); the download was removed")
    if expected:
        log(f"{remote.served_name}: verified {expected}")
    entry: dict[str, str | int | None] = {"url": remote.url, "checksum": expected, "date": _now()}
    if remote.gunzip:
        entry.update(download_bytes=size, download_sha256=digests["sha256"])
        size, sha256 = gunzip(part, final, remote.unpacked_size, log)
        part.unlink()
    else:
        sha256 = digests["sha256"]
        os.replace(part, final)
    entry.update(bytes=size, sha256=sha256)
    manifest.put(remote.name, entry)
    if not expected:
        log(f"{remote.name}: no published checksum; recorded sha256 {sha256} in {manifest.path}")
    return final


def _confirm(final: Path, remote: RemoteFile, manifest: Manifest, expected: str | None,
             log: Callable[[str], None]) -> None:
    """Check a final file already present against its manifest entry (and the expected checksum)."""
    entry = manifest.get(remote.name)
    size = final.stat().st_size
    # A file placed here by hand (no entry) is checkable only against a checksum of the same bytes.
    checkable = expected if entry is None and expected and not remote.gunzip else None
    algo = checkable.split(":")[0] if checkable else "sha256"
    digests = hash_file(final, sorted({"sha256", algo}), f"checking {remote.name}")
    sha256 = digests["sha256"]
    if entry is None:
        if checkable and f"{algo}:{digests[algo]}" != checkable:
            raise BenchError(f"checksum mismatch for {final}: expected {checkable}, got {algo}:{digests[algo]}; "
                             "remove it to download it again")
        manifest.put(remote.name, {"url": remote.url, "checksum": checkable, "date": _now(),
                                   "bytes": size, "sha256": sha256})
        log(f"{remote.name}: found without a manifest entry; recorded sha256 {sha256} in {manifest.path}")
        return
    if sha256 != entry.get("sha256") or size != entry.get("bytes"):
        raise BenchError(f"{final} does not match {MANIFEST}: expected sha256:{entry.get('sha256')}, "
                         f"got sha256:{sha256}; remove it to download it again")
    served = entry.get("download_sha256") if remote.gunzip else entry.get("sha256")
    recorded = [c for c in (entry.get("checksum"), served and f"sha256:{served}") if c]
    clash = [c for c in recorded if expected and c.split(":")[0] == expected.split(":")[0] and c != expected]
    if clash:
        raise BenchError(f"checksum mismatch for {final}: expected {expected}, got {clash[0]} when it was "
                         "downloaded; remove it to download it again")
    log(f"{remote.name}: up to date")


def _now() -> str:
    """The current UTC time, to the second, for the manifest."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")

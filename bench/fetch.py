"""A verified, resumable HTTP downloader for the public data sets of bench/sources.py.

Sources (bench/sources.py) are short lists of files: URL, final file name, expected checksum where
one is published, and whether the file is served gzipped. Bytes stream into `NAME.part`; a dropped connection is
resumed with an HTTP Range request (within the call, and again on the next call); the complete
download is checked against the published checksum, or, where none exists, its sha256 is recorded in
`bench-fetch.json` beside the files on the first download and checked on every later call. Only a
complete, verified file is renamed (os.replace) to its final name, so that name never holds a
partial or wrong file. HTTP uses the standard library only (urllib.request).
"""

from __future__ import annotations

import datetime
import errno
import gzip
import hashlib
import http.client
import json
import os
import shutil
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from bench.errors import BenchError, closest
from bench.sources import RemoteFile, Source, default_root

MANIFEST = "bench-fetch.json"
CHUNK = 1 << 20
TIMEOUT = 60.0  # seconds allowed for connecting and for each read
RETRIES = 4  # reconnections (with Range) after a dropped connection, within one call
RETRY_WAIT = 2.0  # seconds before the first reconnection, doubled for each next one
USER_AGENT = "bench-fetch/0.1 (python urllib)"
LOOPBACK = ("127.0.0.1", "::1", "localhost")


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
    _make_writable(folder)
    manifest = Manifest(folder / MANIFEST, source.name)
    published: dict[str, str] = {}
    if source.checksums is not None and any(f.checksum is None for f in files) and checksum is None:
        sums = _fetch_file(source.checksums, folder, manifest, None, typed=False, log=log)
        published = _read_sums(sums)
    paths = []
    for remote in files:
        expected = checksum or remote.checksum or published.get(remote.served_name)
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


def _make_writable(folder: Path) -> None:
    """Create `folder`, or say in one line why files cannot be written there."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BenchError(f"destination {folder} is not writable: {exc.strerror or exc}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise BenchError(f"destination {folder} is not writable: permission denied")


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
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, self.path)


def _fetch_file(remote: RemoteFile, folder: Path, manifest: Manifest, expected: str | None, *,
                typed: bool, log: Callable[[str], None]) -> Path:
    """Make FOLDER/NAME a complete, verified copy of `remote`; no HTTP request when it already is."""
    final = folder / remote.name
    if final.exists():
        _confirm(final, remote, manifest, expected, log)
        return final
    algo = expected.split(":")[0] if expected else "sha256"
    part = folder / (remote.served_name + ".part")
    size, digests = _download(remote.url, part, sorted({"sha256", algo}), typed=typed,
                              extra=remote.unpacked_size or 0, log=log)
    got = f"{algo}:{digests[algo]}"
    if expected and got != expected:
        part.unlink(missing_ok=True)
        raise BenchError(f"checksum mismatch for {remote.served_name}: expected {expected}, got {got} "
                         f"(from {remote.url}); the download was removed")
    if expected:
        log(f"{remote.served_name}: verified {expected}")
    entry = {"url": remote.url, "checksum": expected, "date": _now()}
    if remote.gunzip:
        entry.update(download_bytes=size, download_sha256=digests["sha256"])
        size, sha256 = _gunzip(part, final, remote.unpacked_size, log)
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
    digests = _hash_file(final, sorted({"sha256", algo}), f"checking {remote.name}")
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


def _download(url: str, part: Path, algos: list[str], *, typed: bool, extra: int,
              log: Callable[[str], None]) -> tuple[int, dict[str, str]]:
    """Stream `url` into `part`, resuming from its current size; return (bytes, {algo: hex}).

    A dropped connection is retried RETRIES times with `Range: bytes=N-`; a server answering 200 to
    a Range request is restarted from byte 0. When the retries run out the .part stays for the next
    call. `extra` is further disk space the file will need afterwards (its unpacked copy).
    """
    _check_scheme(url, typed)
    have = part.stat().st_size if part.exists() else 0
    hashes = _hash_file(part, algos, f"checking partial {part.name}", objects=True) if have else _hashers(algos)
    if have:
        log(f"{part.name}: resuming after {have} bytes")
    attempt = 0
    bar = None
    try:
        while True:
            try:
                response = _open(url, have, typed)
            except _Unsatisfiable as exc:
                if exc.total == have:  # the .part already holds the whole file
                    break
                log(f"{part.name}: larger than the file on the server ({_of(exc.total)} bytes); starting again")
                part.unlink()
                have, hashes = 0, _hashers(algos)
                continue
            with response:
                start, total = _span(response, have, url)
                if start == 0 and have:
                    log(f"{part.name}: the server ignored the Range request; starting again from byte 0")
                    have, hashes = 0, _hashers(algos)
                if bar is None:
                    _check_space(part, None if total is None else total - have + extra, total)
                    bar = tqdm(total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
                               desc=part.name.removesuffix(".part"), file=sys.stderr, leave=False)
                else:
                    bar.reset(total=total)
                    bar.update(have)
                have, problem = _receive(response, part, have, total, hashes, bar)
            if problem is None:
                break
            attempt += 1
            if attempt > RETRIES:
                raise BenchError(f"download of {url} interrupted after {have} of {_of(total)} bytes ({problem}); "
                                 f"run the same command again to resume from {part}")
            wait = RETRY_WAIT * 2 ** (attempt - 1)
            log(f"{part.name}: {problem} after {have} of {_of(total)} bytes; resuming in {wait:g} s "
                f"({attempt}/{RETRIES})")
            time.sleep(wait)
    finally:
        if bar is not None:
            bar.close()
    return have, {a: h.hexdigest() for a, h in hashes.items()}


def _check_scheme(url: str, typed: bool) -> None:
    """HTTPS only, except plain http typed with --url or to this machine's loopback address."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https" or (parts.scheme == "http" and (typed or parts.hostname in LOOPBACK)):
        return
    if parts.scheme == "http":
        raise BenchError(f"refusing plain http for {url}: documented sources use https "
                         "(pass the URL with --url to use it anyway)")
    raise BenchError(f"cannot fetch {url}: only http(s) URLs are supported")


class _Unsatisfiable(Exception):
    """HTTP 416 to a request from byte N: the server's file has `total` bytes (None if unsaid)."""

    def __init__(self, total: int | None) -> None:
        super().__init__(total)
        self.total = total


def _open(url: str, have: int, typed: bool) -> http.client.HTTPResponse:
    """GET `url` from byte `have` (a Range request when `have` > 0); errors as one line."""
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and have:
            raise _Unsatisfiable(_total_of(exc.headers.get("Content-Range"))) from None
        raise BenchError(f"HTTP {exc.code} {exc.reason} for {url}") from None
    except urllib.error.URLError as exc:
        reason = getattr(exc.reason, "strerror", None) or exc.reason
        raise BenchError(f"cannot reach {urllib.parse.urlsplit(url).netloc}: {reason} ({url})") from None
    except (OSError, http.client.HTTPException) as exc:
        host = urllib.parse.urlsplit(url).netloc
        raise BenchError(f"cannot reach {host}: {exc or type(exc).__name__} ({url})") from None
    if response.geturl() != url:  # a redirect falls back to plain http only if the typed URL was http
        _check_scheme(response.geturl(), typed and url.startswith("http:"))
    return response


def _span(response: http.client.HTTPResponse, have: int, url: str) -> tuple[int, int | None]:
    """(first byte, total bytes or None) of a 200 or 206 response to a request from byte `have`."""
    length = response.headers.get("Content-Length")
    if response.status != 206:
        return 0, int(length) if length and length.isdigit() else None
    content_range = response.headers.get("Content-Range", "")
    first = content_range.removeprefix("bytes ").split("-")[0]
    if first != str(have):
        raise BenchError(f"{url} answered '{content_range}' to a request from byte {have}")
    total = _total_of(content_range)
    return have, total if total is not None else (have + int(length) if length and length.isdigit() else None)


def _total_of(content_range: str | None) -> int | None:
    """The total size in a Content-Range header ('bytes 0-9/10' or 'bytes */10'), or None."""
    total = (content_range or "").rpartition("/")[2]
    return int(total) if total.isdigit() else None


def _receive(response: http.client.HTTPResponse, part: Path, have: int, total: int | None,
             hashes: dict, bar: tqdm) -> tuple[int, str | None]:
    """Append the body to `part` (truncated to `have` bytes first); (bytes now held, problem or None)."""
    with open(part, "r+b" if part.exists() else "wb", buffering=0) as out:
        out.truncate(have)
        out.seek(have)
        while total is None or have < total:
            try:
                chunk = response.read(CHUNK)
            except (OSError, http.client.HTTPException) as exc:  # reset, timeout, broken chunking
                return have, f"connection lost ({exc or type(exc).__name__})"
            if not chunk:
                return (have, None) if total is None else (have, "connection closed early")
            try:
                _write_chunk(out, chunk)
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    needed = "unknown" if total is None else str(total - out.tell())
                    raise BenchError(f"disk full writing {part}: {needed} more bytes needed, "
                                     f"{shutil.disk_usage(part.parent).free} free") from None
                raise BenchError(f"cannot write {part}: {exc.strerror or exc}") from None
            for h in hashes.values():
                h.update(chunk)
            have += len(chunk)
            bar.update(len(chunk))
    return have, None


def _write_chunk(out, chunk: bytes) -> None:
    """Write all of `chunk` to the unbuffered file `out` (raw writes may be partial)."""
    view = memoryview(chunk)
    while view:
        view = view[out.write(view):]


def _check_space(part: Path, needed: int | None, total: int | None) -> None:
    """Fail before downloading when the disk cannot hold what is left of the file (and its unpacked copy)."""
    free = shutil.disk_usage(part.parent).free
    if needed is not None and needed > free:
        raise BenchError(f"not enough disk space for {part.name.removesuffix('.part')} ({_of(total)} bytes): "
                         f"{needed} more bytes needed, {free} free in {part.parent}")


def _gunzip(part: Path, final: Path, unpacked_size: int | None, log: Callable[[str], None]) -> tuple[int, str]:
    """Stream the gzip file `part` into FINAL.part, rename it to `final`; (bytes, sha256) of the result."""
    out_path = final.with_name(final.name + ".part")
    digest, written = hashlib.sha256(), 0
    log(f"{final.name}: unpacking {part.name.removesuffix('.part')}")
    try:
        with open(part, "rb") as raw, gzip.GzipFile(fileobj=raw) as unpacked, open(out_path, "wb", buffering=0) as out, \
                tqdm(total=part.stat().st_size, unit="B", unit_scale=True, unit_divisor=1024,
                     desc=f"unpacking {final.name}", file=sys.stderr, leave=False) as bar:
            while chunk := unpacked.read(CHUNK):
                _write_chunk(out, chunk)
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


def _read_sums(path: Path) -> dict[str, str]:
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


def _hashers(algos: list[str]) -> dict:
    """Fresh hash objects for `algos`."""
    return {a: hashlib.new(a, usedforsecurity=False) if a == "md5" else hashlib.new(a) for a in algos}


def _hash_file(path: Path, algos: list[str], desc: str, objects: bool = False) -> dict:
    """Hash the file at `path` (with a progress bar); hex digests, or the hash objects to go on with."""
    hashes = _hashers(algos)
    with open(path, "rb") as fh, tqdm(total=path.stat().st_size, unit="B", unit_scale=True, unit_divisor=1024,
                                     desc=desc, file=sys.stderr, leave=False) as bar:
        while chunk := fh.read(CHUNK):
            for h in hashes.values():
                h.update(chunk)
            bar.update(len(chunk))
    return hashes if objects else {a: h.hexdigest() for a, h in hashes.items()}


def _of(total: int | None) -> str:
    """A total byte count for messages ('?' when the server did not say)."""
    return "?" if total is None else str(total)


def _now() -> str:
    """The current UTC time, to the second, for the manifest."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")

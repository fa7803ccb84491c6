"""The HTTP side of `bench fetch`: one file streamed into its `.part`, resumed with Range requests
after a dropped connection (within the call and on the next one), hashed as it arrives. HTTPS only
(plain http when typed or to loopback), redirects checked before they are followed; the standard
library only (urllib.request)."""

from __future__ import annotations

import errno
import http.client
import shutil
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from bench import fetch_files
from bench.errors import BenchError

TIMEOUT = 60.0  # seconds allowed for connecting and for each read
RETRIES = 4  # reconnections (with Range) after a dropped connection, within one call
RETRY_WAIT = 2.0  # seconds before the first reconnection, doubled for each next one
USER_AGENT = "bench-fetch/0.1 (python urllib)"
LOOPBACK = ("127.0.0.1", "::1", "localhost")


def download(url: str, part: Path, algos: list[str], *, typed: bool, extra: int,
             log: Callable[[str], None]) -> tuple[int, dict[str, str]]:
    """Stream `url` into `part`, resuming from its current size; return (bytes, {algo: hex}).

    A dropped connection is retried RETRIES times with `Range: bytes=N-`; a server answering 200 to
    a Range request is restarted from byte 0. When the retries run out the .part stays for the next
    call. `extra` is further disk space the file will need afterwards (its unpacked copy).
    """
    _check_scheme(url, typed)
    fetch_files.refuse_link(part)
    have = part.stat().st_size if part.exists() else 0
    hashes = fetch_files.hash_file(part, algos, f"checking partial {part.name}", objects=True) if have else fetch_files.hashers(algos)
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
                have, hashes = 0, fetch_files.hashers(algos)
                continue
            with response:
                start, total = _span(response, have, url)
                if start == 0 and have:
                    log(f"{part.name}: the server ignored the Range request; starting again from byte 0")
                    have, hashes = 0, fetch_files.hashers(algos)
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
    opener = urllib.request.build_opener(_CheckedRedirects(typed and url.startswith("http:")))
    try:
        response = opener.open(urllib.request.Request(url, headers=headers), timeout=TIMEOUT)
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
    return response


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only once its target passes `_check_scheme`: https, or plain http when the
    typed URL was plain http (or to loopback); the check runs before the new request is made."""

    def __init__(self, typed_http: bool) -> None:
        super().__init__()
        self.typed_http = typed_http

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        _check_scheme(newurl, self.typed_http)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


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
    with fetch_files.open_part(part) as out:
        out.truncate(have)
        out.seek(have)
        while total is None or have < total:
            try:
                chunk = response.read(fetch_files.CHUNK)
            except (OSError, http.client.HTTPException) as exc:  # reset, timeout, broken chunking
                return have, f"connection lost ({exc or type(exc).__name__})"
            if not chunk:
                return (have, None) if total is None else (have, "connection closed early")
            try:
                fetch_files.write_chunk(out, chunk)
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


def _check_space(part: Path, needed: int | None, total: int | None) -> None:
    """Fail before downloading when the disk cannot hold what is left of the file (and its unpacked copy)."""
    free = shutil.disk_usage(part.parent).free
    if needed is not None and needed > free:
        raise BenchError(f"not enough disk space for {part.name.removesuffix('.part')} ({_of(total)} bytes): "
                         f"{needed} more bytes needed, {free} free in {part.parent}")


def _of(total: int | None) -> str:
    """A total byte count for messages ('?' when the server did not say)."""
    return "?" if total is None else str(total)

"""`bench fetch`: download the public data sets by name, verified and resumable (see bench/fetch.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench import fetch, sources
from bench.errors import BenchError


def register(sub: argparse._SubParsersAction) -> None:
    """Add `bench fetch` and its options to the subcommand parsers."""
    p = sub.add_parser("fetch", help="download public data sets by name (verified, resumable); --list shows them",
                       description="Download named public data sets into DEST/NAME (default DEST: $BENCH_DATA, "
                                   "else ~/.cache/bench), resuming interrupted downloads and checking each file "
                                   "against its published checksum or the sha256 recorded on its first download.")
    p.add_argument("names", nargs="*", metavar="NAME", help="source name(s), e.g. sciplex3 (see --list)")
    p.add_argument("--list", action="store_true", help="list the sources: files, size, origin, licence")
    p.add_argument("--dest", type=Path, default=None,
                   help="folder that receives one subfolder per source (default: $BENCH_DATA, else "
                        "$XDG_CACHE_HOME/bench or ~/.cache/bench)")
    p.add_argument("--file", default=None, metavar="FILE",
                   help="fetch only this file of the source (its final or served name)")
    p.add_argument("--url", default=None,
                   help="download from this URL instead of the documented one (one file: a single-file source, "
                        "or --file); plain http is accepted here")
    p.add_argument("--sha256", default=None, metavar="HEX",
                   help="expected sha256 of the file as served (one file, like --url); replaces the registry's")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the registry (--list), or fetch each named source and print its files' paths."""
    if args.list:
        if args.names:
            raise BenchError("--list takes no source names")
        print(list_table())
        return 0
    if not args.names:
        raise BenchError("name a source to fetch (`bench fetch --list` shows them)")
    if len(args.names) > 1 and (args.file or args.url or args.sha256):
        raise BenchError("--file, --url and --sha256 apply to one source: name only one")
    chosen = [sources.get_source(name) for name in dict.fromkeys(args.names)]
    checksum = _sha256(args.sha256) if args.sha256 is not None else None
    for source in chosen:
        for path in fetch.fetch_source(source, args.dest, only=args.file, url=args.url, checksum=checksum):
            print(path)
    return 0


def list_table() -> str:
    """The sources as a table: one row per file, the source's name, origin and licence on its first row."""
    rows = [("NAME", "FILE", "SIZE", "FROM", "CHECKSUM", "LICENCE / CITATION")]
    for s in sources.SOURCES.values():
        for i, f in enumerate(s.files):
            size = sources.human_size(f.size)
            if f.unpacked_size:
                size += f" ({sources.human_size(f.unpacked_size)} unpacked)"
            about = (s.name, s.origin, s.checksum_note, s.licence) if i == 0 else ("", "", "", "")
            rows.append((about[0], f.name, size, *about[1:]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join([*(c.ljust(w) for c, w in zip(r, widths)), r[-1]]).rstrip() for r in rows]
    lines.append(f"sizes as downloaded; files go to DEST/NAME (DEST now: {sources.default_root()})")
    return "\n".join(lines)


def _sha256(text: str) -> str:
    """--sha256 HEX (or sha256:HEX) as "sha256:hex", or a one-line error."""
    digest = text.strip().lower().removeprefix("sha256:")
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise BenchError(f"--sha256 needs 64 hexadecimal digits, got '{text}'")
    return "sha256:" + digest

"""User-facing errors: the CLI prints them as one line and exits with code 2."""


class BenchError(Exception):
    """A problem with the user's input (file, column, value or argument), stated in one line."""


class DataUnsuitable(BenchError):
    """The data lack what a predictor needs (e.g. bulk profiles of the single-cell cell lines): the
    run records the predictor as skipped with this reason, not as failed."""


def closest(name: str, choices) -> str:
    """Return ' (did you mean X?)' for the closest of `choices`, or '' when nothing is close."""
    import difflib

    match = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else ""


def io_failure(exc: OSError | MemoryError) -> str:
    """One line for an OSError or MemoryError that reached the command line: the file it names (when
    it names one) and why, without a traceback."""
    import errno

    if isinstance(exc, MemoryError):
        return "out of memory: the data do not fit in this machine's memory (try a smaller file or --max-cells-per-condition)"
    why = {errno.ENOSPC: "disk full", errno.EFBIG: "file size limit reached (ulimit -f)"}.get(exc.errno or 0)
    why = why or exc.strerror or str(exc) or type(exc).__name__
    return f"{exc.filename}: {why}" if exc.filename else why


def one_line(text: str) -> str:
    """`text` with its control characters escaped (a newline as \\n): an error stays one line even when
    it quotes a value a file chose."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)

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

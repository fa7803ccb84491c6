"""bench: a harness comparing predictors of single-cell drug responses on unseen drugs."""

__version__ = "0.1.0"

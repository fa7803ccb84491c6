"""Subcommands of the `bench` CLI."""

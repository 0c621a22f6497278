"""The two consoles every command prints on: results to stdout, warnings and errors to stderr."""

from __future__ import annotations

from rich.console import Console

__all__ = ["err", "out"]

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

"""One progress bar for the command line (rich, on stderr): shown only when asked for and on a terminal."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import Progress


@contextmanager
def progress_bar(total: int, description: str, enabled: bool) -> Iterator[Callable[..., None]]:
    """Yields `advance(description=None)`: one step done, and optionally a new description (e.g. counts)."""
    console = Console(stderr=True)
    with Progress(console=console, transient=True, disable=not (enabled and console.is_interactive)) as bar:
        task = bar.add_task(description, total=total)

        def advance(text: str | None = None) -> None:
            bar.update(task, advance=1, description=text or None)  # None keeps the description

        yield advance

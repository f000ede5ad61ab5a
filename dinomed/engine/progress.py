"""The one rich progress bar of dinomed: title, bar, count, the loop's own fields, time left."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

__all__ = ["progress_bar"]


def progress_bar(title: str, console: Console | None = None, *, fields: str = "", transient: bool = False,
                 disable: bool = False) -> Progress:
    """A :class:`rich.progress.Progress` showing ``title``, a bar, ``done/total``, ``fields`` and the time left.

    ``fields`` is a rich format string over the task's fields, e.g. ``"loss {task.fields[loss]:.4f}"``; give
    the field values to ``add_task`` / ``update``.

    Example:
        >>> with progress_bar("finetune", console, fields="loss {task.fields[loss]:.3f}") as bar:
        ...     task = bar.add_task("finetune", total=100, loss=float("nan"))
    """
    columns = [TextColumn(f"[bold]{title}"), BarColumn(), MofNCompleteColumn()]
    if fields:
        columns.append(TextColumn(fields))
    columns.append(TimeRemainingColumn())
    return Progress(*columns, console=console, transient=transient, disable=disable)

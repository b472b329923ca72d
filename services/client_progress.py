"""A rich progress bar for a job: status, epochs done, and the latest losses, on stderr."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from services.client_models import Job

__all__ = ["JobProgressBar", "describe_losses"]


def describe_losses(job: Job) -> str:
    """Return the job's latest train_loss and val_loss as text, e.g. "train_loss 0.41"."""
    parts = []
    for name in ("train_loss", "val_loss"):
        value = job.metrics.get(name)
        if value is not None:
            parts.append(f"{name} {value:.4g}")
    return "  ".join(parts)


class JobProgressBar:
    """A context manager whose ``update(job)`` redraws the bar from a fetched job."""

    def __init__(self, console: Console | None = None) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[epochs]}"),
            TextColumn("{task.fields[losses]}"),
            TimeElapsedColumn(),
            console=console or Console(stderr=True),
        )
        self._task = self._progress.add_task("queued", total=None, epochs="", losses="")

    def __enter__(self) -> JobProgressBar:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def update(self, job: Job) -> None:
        self._progress.update(
            self._task,
            description=job.status,
            total=job.progress.epochs or None,
            completed=job.progress.epoch,
            epochs=f"epoch {job.progress.epoch}/{job.progress.epochs}",
            losses=describe_losses(job),
        )

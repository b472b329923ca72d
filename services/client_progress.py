"""Progress of a job on stderr: a live rich bar on a terminal, plain lines in a log."""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from services.client_models import Job

__all__ = [
    "LINE_INTERVAL_SECONDS",
    "JobProgressBar",
    "JobProgressLines",
    "ProgressLines",
    "describe_losses",
    "job_progress",
]

# A log gets a progress line at most this often, plus one per status change and one
# at the last epoch, so a long job shows that it moves without flooding the log.
LINE_INTERVAL_SECONDS = 5.0


def describe_losses(job: Job) -> str:
    """Return the job's latest train_loss and val_loss as text, e.g. "train_loss 0.41"."""
    parts = []
    for name in ("train_loss", "val_loss"):
        value = job.metrics.get(name)
        if value is not None:
            parts.append(f"{name} {value:.4g}")
    return "  ".join(parts)


def job_progress(console: Console | None = None) -> JobProgressBar | JobProgressLines:
    """Return a progress bar when ``console`` (default: stderr) is a terminal, else
    plain lines, because a file or a CI log would receive the bar only when it stops."""
    console = console or Console(stderr=True)
    return JobProgressBar(console) if console.is_terminal else JobProgressLines(console)


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


class ProgressLines:
    """Plain progress lines for a log: ``show(line)`` prints at most every ``interval``
    seconds, ``show(line, now=True)`` prints at once, and a line equal to the last one
    printed is skipped. Each line ends with the seconds since the start."""

    def __init__(
        self,
        console: Console | None = None,
        *,
        interval: float = LINE_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._console = console or Console(stderr=True)
        self._interval = interval
        self._clock = clock
        self._started = clock()
        self._printed_at: float | None = None
        self._last_line = ""

    def show(self, line: str, *, now: bool = False) -> None:
        if line == self._last_line:
            return
        time_now = self._clock()
        due = self._printed_at is None or time_now - self._printed_at >= self._interval
        if not (due or now):
            return
        elapsed = f"{time_now - self._started:.0f} s"
        self._console.print(f"{line}  {elapsed}", markup=False, highlight=False, soft_wrap=True)
        self._printed_at = time_now
        self._last_line = line


class JobProgressLines:
    """A context manager whose ``update(job)`` prints the bar's content as a plain line:
    at each status change, at the last epoch, and otherwise at most every ``interval``
    seconds."""

    def __init__(
        self,
        console: Console | None = None,
        *,
        interval: float = LINE_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lines = ProgressLines(console, interval=interval, clock=clock)
        self._last_status = ""

    def __enter__(self) -> JobProgressLines:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        return None

    def update(self, job: Job) -> None:
        parts = [job.status, f"epoch {job.progress.epoch}/{job.progress.epochs}"]
        losses = describe_losses(job)
        if losses:
            parts.append(losses)
        last_epoch = job.progress.epochs > 0 and job.progress.epoch == job.progress.epochs
        changed = job.status != self._last_status
        self._lines.show("  ".join(parts), now=last_epoch or changed)
        self._last_status = job.status

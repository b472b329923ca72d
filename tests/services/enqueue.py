"""An enqueue function for apps under test that records job ids instead of sending them."""

from __future__ import annotations

__all__ = ["RecordingEnqueue"]


class RecordingEnqueue:
    """Records the ids of the jobs an app enqueues, so no broker or worker is needed."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def __call__(self, job_id: str) -> bool:
        self.sent.append(job_id)
        return True

    def take(self) -> list[str]:
        """Return the ids recorded since the last call, and forget them."""
        sent, self.sent = self.sent, []
        return sent

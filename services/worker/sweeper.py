"""The sweeper: starts a sweep's next trials, stops trials by its early-stopping rule, and
ends sweeps whose trials have all ended.

Each pass handles every running sweep in two steps:

1. Early stopping: the rule judges each running trial that has new epochs, from the
   objective values in the history of the sweep's running and succeeded trials.
   A trial to stop gets a stop request on its job row (``stop_request``,
   ``stop_request_message``), and its worker ends it at its next flush with
   stop_reason ``early_stopped`` and that message.
2. Starting and ending: with the sweep row locked, trials become jobs while fewer
   than ``max_parallel`` of the sweep's jobs are queued or running, and while the
   tenant is under its running and queued job quotas. Other trials wait for a
   later pass. The jobs are enqueued after the commit. A sweep with no trial left
   to start or running ends.

Several sweepers may run at once: the lock makes their step 2 take turns, and a
stop request is a conditional UPDATE that keeps the first request.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from services import stopping_rules, sweeps
from services.settings import Settings
from services.store import sweeps as sweep_store
from services.store.db import session_scope
from services.store.models import Sweep
from services.store.sweeps import TrialRow
from services.worker.enqueue import enqueue_job

__all__ = [
    "SWEEP_INTERVAL_SECONDS",
    "SweeperReport",
    "advance_sweeps",
    "ensure_sweeper_thread",
    "run_sweeper",
]

logger = logging.getLogger(__name__)

Enqueue = Callable[[str], bool]

SWEEP_INTERVAL_SECONDS = 1.0
# Statuses of the trials whose curves the rules compare with.
_COMPARED_STATUSES = ("running", "succeeded")


@dataclass
class SweeperReport:
    """The jobs one pass started and stopped, the sweeps it ended, and the sweeps it failed on."""

    started: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def advance_sweeps(settings: Settings, *, enqueue: Enqueue = enqueue_job) -> SweeperReport:
    """Run one pass over every running sweep; return what changed.

    An error in one sweep is logged and recorded in ``errors``, and the pass goes on
    with the other sweeps.
    """
    report = SweeperReport()
    with session_scope(settings.resolved_database_url, write=False) as session:
        sweep_ids = sweep_store.list_running_sweep_ids(session)
    for sweep_id in sweep_ids:
        # One broken sweep must not hold up the others, whatever went wrong with it.
        try:
            report.stopped += _apply_early_stopping(settings, sweep_id)
            started, status = _start_and_finish(settings, sweep_id)
        except Exception:
            logger.exception("sweeper: advancing sweep %s failed", sweep_id)
            report.errors.append(sweep_id)
            continue
        report.started += started
        if status is not None:
            report.finished.append(sweep_id)
        for job_id in started:
            enqueue(job_id)
    return report


def run_sweeper(
    settings: Settings,
    stop_event: threading.Event,
    *,
    enqueue: Enqueue = enqueue_job,
    interval_seconds: float = SWEEP_INTERVAL_SECONDS,
) -> None:
    """Run ``advance_sweeps`` every ``interval_seconds`` until ``stop_event`` is set."""
    logger.info("sweeper started, a pass every %.1f s", interval_seconds)
    failures = 0
    while not stop_event.is_set():
        try:
            advance_sweeps(settings, enqueue=enqueue)
        # A long-running loop must outlive any one failed pass, whatever its cause.
        except Exception as error:
            failures += 1
            level = logging.WARNING if failures == 1 else logging.DEBUG
            logger.log(level, "sweeper pass failed (%d in a row): %s", failures, error)
        else:
            if failures:
                logger.info("sweeper pass succeeded again after %d failures", failures)
            failures = 0
        stop_event.wait(interval_seconds)
    logger.info("sweeper stopped")


_thread_lock = threading.Lock()
_threads: dict[int, threading.Thread] = {}


def ensure_sweeper_thread(
    settings: Settings, stop_event: threading.Event, *, enqueue: Enqueue = enqueue_job
) -> None:
    """Start a ``run_sweeper`` thread for ``stop_event`` unless one is already running.

    The reaper calls this on every pass, so the sweeper runs every
    ``SWEEP_INTERVAL_SECONDS`` in the reaper's process and stops with the reaper.
    """
    with _thread_lock:
        thread = _threads.get(id(stop_event))
        if thread is not None and thread.is_alive():
            return
        thread = threading.Thread(
            target=run_sweeper,
            args=(settings, stop_event),
            kwargs={"enqueue": enqueue},
            name="sweeper",
            daemon=True,
        )
        _threads[id(stop_event)] = thread
        thread.start()


# Starting trials and ending sweeps ------------------------------------------------------


def _start_and_finish(settings: Settings, sweep_id: str) -> tuple[list[str], str | None]:
    """Start trials up to ``max_parallel``, or end the sweep; return the new jobs and status."""
    with session_scope(settings.resolved_database_url, write=True) as session:
        sweep = sweep_store.lock_running_sweep(session, sweep_id)
        if sweep is None:
            return [], None
        started = sweeps.start_trials(session, settings, sweep)
        status = None if started else sweeps.finish_if_done(session, sweep)
    return started, status


# Early stopping -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Candidate:
    trial: TrialRow
    epoch: int  # the epoch to judge the trial at


def _apply_early_stopping(settings: Settings, sweep_id: str) -> list[str]:
    """Judge the sweep's running trials and request stops; return the stopped job ids."""
    with session_scope(settings.resolved_database_url, write=False) as session:
        sweep = session.get(Sweep, sweep_id)
        if sweep is None or sweep.status != "running" or not sweep.config.get("early_stopping"):
            return []
        rule: dict[str, Any] = sweep.config["early_stopping"]
        trials = sweep_store.list_trials(session, sweep_id)
        candidates = _candidates(rule, trials)
        if not candidates:
            return []
        compared = [
            trial.job_id
            for trial in trials
            if trial.job_id is not None and trial.status in _COMPARED_STATUSES
        ]
        curves = sweep_store.read_objective_curves(
            session, compared, sweep.objective_metric, max(c.epoch for c in candidates)
        )

    judged: list[tuple[_Candidate, stopping_rules.Judgement]] = []
    for candidate in candidates:
        job_id = candidate.trial.job_id
        assert job_id is not None
        others = [curve for other, curve in curves.items() if other != job_id]
        judgement = _judge(rule, sweep, curves.get(job_id, []), others, candidate.epoch)
        if judgement.judged:
            judged.append((candidate, judgement))
    return _record(settings, sweep_id, judged)


def _candidates(rule: dict[str, Any], trials: list[TrialRow]) -> list[_Candidate]:
    """Return the running trials with an epoch the rule has not judged yet."""
    candidates = []
    for trial in trials:
        if trial.status != "running" or trial.stop_request is not None or trial.job_id is None:
            continue
        if rule["rule"] == "median":
            epoch = trial.epoch if trial.epoch > rule["grace_epochs"] else 0
        else:
            rungs = stopping_rules.asha_rungs(
                rule["grace_epochs"], rule["reduction_factor"], trial.epochs or 0
            )
            epoch = max((rung for rung in rungs if rung <= trial.epoch), default=0)
        if epoch > trial.checked_epoch:
            candidates.append(_Candidate(trial, epoch))
    return candidates


def _judge(
    rule: dict[str, Any],
    sweep: Sweep,
    curve: list[float | None],
    others: list[list[float | None]],
    epoch: int,
) -> stopping_rules.Judgement:
    if rule["rule"] == "median":
        return stopping_rules.median_rule(
            curve,
            others,
            epoch,
            mode=sweep.objective_mode,
            metric=sweep.objective_metric,
            min_trials=rule["min_trials"],
        )
    return stopping_rules.asha_rule(
        curve,
        others,
        epoch,
        mode=sweep.objective_mode,
        metric=sweep.objective_metric,
        reduction_factor=rule["reduction_factor"],
        min_trials=rule["min_trials"],
    )


def _record(
    settings: Settings,
    sweep_id: str,
    judged: list[tuple[_Candidate, stopping_rules.Judgement]],
) -> list[str]:
    """Write the stop requests and the judged epochs in one transaction."""
    if not judged:
        return []
    stopped = []
    with session_scope(settings.resolved_database_url, write=True) as session:
        for candidate, judgement in judged:
            job_id = candidate.trial.job_id
            assert job_id is not None
            sweep_store.mark_checked(session, sweep_id, candidate.trial.index, candidate.epoch)
            if judgement.stop_message is None:
                continue
            if sweep_store.request_stop(session, job_id, "early_stopped", judgement.stop_message):
                stopped.append(job_id)
                logger.info(
                    "sweep %s: stopping trial %d (job %s): %s",
                    sweep_id,
                    candidate.trial.index,
                    job_id,
                    judgement.stop_message,
                )
    return stopped

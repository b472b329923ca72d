"""The worker side: the Celery app, the job task, the runner, the reaper, and enqueueing."""

"""One router per resource: jobs, datasets, and the health checks."""

"""``/healthz`` (the process is up) and ``/readyz`` (its database and broker are reachable).

Both also serve HEAD, with GET's status and headers and no body. The HEAD routes stay
out of the OpenAPI document, which lists each check once, as GET.
"""

from __future__ import annotations

from fastapi import APIRouter

from services.api.deps import SettingsDep
from services.api.problems import problem_responses
from services.api.readiness import failed_checks
from services.errors import Unavailable

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness: the process is up")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    responses=problem_responses(503),
    summary="Readiness: the database and the broker are reachable",
)
def readyz(settings: SettingsDep) -> dict[str, str]:
    failures = failed_checks(settings)
    if failures:
        raise Unavailable("; ".join(failures))
    return {"status": "ready"}


router.add_api_route("/healthz", healthz, methods=["HEAD"], include_in_schema=False)
router.add_api_route("/readyz", readyz, methods=["HEAD"], include_in_schema=False)

"""Queries on API keys. Only the SHA-256 of a secret is stored, and looked up by it."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Connection, Row
from sqlalchemy.orm import Session

from services.store.models import ApiKey, utcnow

__all__ = [
    "find_active_key",
    "find_active_key_row",
    "get_key",
    "insert_key",
    "list_keys",
    "revoke_key",
]

# Every authenticated request runs this, so it is built once, as a Core statement.
_ACTIVE_KEY_QUERY = select(ApiKey.id, ApiKey.tenant, ApiKey.operator).where(
    ApiKey.secret_sha256 == bindparam("secret_sha256"), ApiKey.revoked_at.is_(None)
)


def insert_key(session: Session, key: ApiKey) -> None:
    session.add(key)
    session.flush()


def find_active_key(session: Session, secret_sha256: str) -> ApiKey | None:
    """Return the unrevoked key whose secret hashes to ``secret_sha256``, if any."""
    return session.scalars(
        select(ApiKey).where(ApiKey.secret_sha256 == secret_sha256, ApiKey.revoked_at.is_(None))
    ).one_or_none()


def find_active_key_row(connection: Connection, secret_sha256: str) -> Row[str, str, bool] | None:
    """Return ``(id, tenant, operator)`` of the unrevoked key with this hash, if any."""
    result = connection.execute(_ACTIVE_KEY_QUERY, {"secret_sha256": secret_sha256})
    return result.first()


def get_key(session: Session, key_id: str) -> ApiKey | None:
    return session.get(ApiKey, key_id)


def list_keys(
    session: Session, tenant: str | None = None, *, include_revoked: bool = False
) -> Sequence[ApiKey]:
    """Return keys oldest first, of one tenant or of all."""
    query = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)
    if tenant is not None:
        query = query.where(ApiKey.tenant == tenant)
    if not include_revoked:
        query = query.where(ApiKey.revoked_at.is_(None))
    return session.scalars(query).all()


def revoke_key(session: Session, key_id: str) -> bool:
    """Mark the key revoked; return False when no unrevoked key has that id."""
    revoked = session.scalars(
        update(ApiKey)
        .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=utcnow())
        .returning(ApiKey.id)
    ).first()
    return revoked is not None

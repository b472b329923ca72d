"""API keys: create one for a tenant, list them, revoke one, and authenticate a request.

A key is ``steep_`` followed by 43 URL-safe characters (256 random bits). The
database keeps its SHA-256 and its first characters (to tell keys apart in a
listing), never the key itself, so a copy of the database
authenticates no request. A
slow password hash buys nothing here: the secret is random, not chosen by a person.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from services.errors import InvalidInput, NotFound
from services.settings import Settings
from services.store import keys as key_store
from services.store.db import get_engine, session_scope
from services.store.models import ApiKey

__all__ = [
    "KEY_PREFIX",
    "LOCAL_TENANT",
    "CreatedKey",
    "KeyInfo",
    "Principal",
    "RevokedKey",
    "authenticate",
    "create_key",
    "hash_secret",
    "list_keys",
    "revoke_key",
]

KEY_PREFIX = "steep_"
LOCAL_TENANT = "local"
SHOWN_PREFIX_CHARS = 12
TENANT_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]{0,99}")


@dataclass(frozen=True)
class Principal:
    """The identity a request acts as: its tenant, and whether it may read service-wide data."""

    tenant: str
    operator: bool
    key_id: str | None


@dataclass(frozen=True)
class KeyInfo:
    """A key as ``steep keys ls`` shows it: never the secret, only its first characters."""

    id: str
    tenant: str
    name: str | None
    prefix: str
    operator: bool
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True)
class CreatedKey:
    """A new key and its secret, which exists only in this value and is shown once."""

    info: KeyInfo
    secret: str


@dataclass(frozen=True)
class RevokedKey:
    """A key after ``revoke_key``, and whether that call revoked it or found it revoked."""

    info: KeyInfo
    already_revoked: bool


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def create_key(
    settings: Settings, tenant: str, *, name: str | None = None, operator: bool = False
) -> CreatedKey:
    """Create a key for ``tenant`` and return it with its secret.

    Raises:
        InvalidInput: ``tenant`` is not 1 to 100 lowercase letters, digits, ``_``, ``.``
            or ``-``, starting with a letter or digit.
    """
    if not TENANT_PATTERN.fullmatch(tenant):
        raise InvalidInput(
            f"tenant must be 1 to 100 lowercase letters, digits, '_', '.' or '-', starting "
            f"with a letter or digit; got {tenant!r}",
            ("tenant",),
        )
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(
        id="key_" + secrets.token_hex(8),
        tenant=tenant,
        name=name,
        prefix=secret[:SHOWN_PREFIX_CHARS],
        secret_sha256=hash_secret(secret),
        operator=operator,
    )
    with session_scope(settings.resolved_database_url) as session:
        key_store.insert_key(session, row)
        info = _info(row)
    return CreatedKey(info=info, secret=secret)


def list_keys(
    settings: Settings, tenant: str | None = None, *, include_revoked: bool = False
) -> list[KeyInfo]:
    """Return the keys, oldest first, of ``tenant`` or of every tenant."""
    with session_scope(settings.resolved_database_url, write=False) as session:
        rows = key_store.list_keys(session, tenant, include_revoked=include_revoked)
        return [_info(row) for row in rows]


def revoke_key(settings: Settings, key_id: str) -> RevokedKey:
    """Revoke a key, or find it already revoked.

    An API process reuses a key it found valid for ``key_cache_seconds``, so requests
    with the key get 401 within that time, not at once.

    Raises:
        NotFound: no key has that id.
    """
    with session_scope(settings.resolved_database_url) as session:
        revoked_now = key_store.revoke_key(session, key_id)
        row = key_store.get_key(session, key_id)
        if row is None:
            raise NotFound(f"no API key has the id {key_id!r}; `steep keys ls` lists them")
        return RevokedKey(info=_info(row), already_revoked=not revoked_now)


def authenticate(settings: Settings, secret: str) -> Principal | None:
    """Return the principal of the unrevoked key ``secret``, or None."""
    if not secret.startswith(KEY_PREFIX):
        return None
    with get_engine(settings.resolved_database_url).connect() as connection:
        row = key_store.find_active_key_row(connection, hash_secret(secret))
    if row is None:
        return None
    return Principal(tenant=row.tenant, operator=bool(row.operator), key_id=row.id)


def _info(row: ApiKey) -> KeyInfo:
    return KeyInfo(
        id=row.id,
        tenant=row.tenant,
        name=row.name,
        prefix=row.prefix,
        operator=row.operator,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )

"""Password hashing: argon2id (argon2-cffi, the OWASP first choice), parameters and salt inside each hash."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_HASHER = PasswordHasher()  # argon2id, RFC 9106 low-memory profile (t=3, m=64 MiB, p=4)
# Verified when the username is unknown, so a login for a missing user costs what a wrong password costs.
_DUMMY = _HASHER.hash("techmatch: no such user")

MIN_LENGTH = 10


def hash_password(password: str) -> str:
    """An argon2id hash of the password."""
    return _HASHER.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    """Whether the password matches the stored hash (constant work whether or not there is one)."""
    try:
        return _HASHER.verify(stored or _DUMMY, password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False

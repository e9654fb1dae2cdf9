"""Secrets: password hashing (argon2id), random tokens, their stored digests, and broker password hashes."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def new_token() -> str:
    """256 bits, URL-safe: session tokens, CSRF tokens, agent secrets."""
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    """Tokens are high-entropy, so a plain sha256 is enough to store them unreadably."""
    return hashlib.sha256(token.encode()).hexdigest()


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


# Mosquitto 2's password file format ("$7$": PBKDF2-SHA512), as `mosquitto_passwd` writes it. The agents'
# secrets are 256-bit random tokens, so the iteration count only has to keep a reconnect storm of a whole
# fleet cheap for the broker, not to slow down guessing; 101 is mosquitto_passwd's own default.
MOSQUITTO_ITERATIONS = 101


def mosquitto_password_hash(password: str, *, salt: bytes | None = None,
                            iterations: int = MOSQUITTO_ITERATIONS) -> str:
    """The part after "username:" in a Mosquitto password file line."""
    salt = secrets.token_bytes(12) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, dklen=64)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_mosquitto_hash(password_hash: str, password: str) -> bool:
    """True when `password_hash` (Mosquitto's "$7$" format) is a hash of `password`."""
    parts = password_hash.split("$")
    if len(parts) != 5 or parts[0] != "" or parts[1] != "7":
        return False
    try:
        iterations = int(parts[2])
        salt, digest = base64.b64decode(parts[3], validate=True), base64.b64decode(parts[4], validate=True)
    except (ValueError, binascii.Error):
        return False
    if not 1 <= iterations <= 10_000_000:
        return False
    return hmac.compare_digest(hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, dklen=len(digest)),
                               digest)

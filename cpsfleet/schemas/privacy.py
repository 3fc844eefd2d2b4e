"""Pseudonymous national identifiers: the same keyed hash on both sides of the wire.

Holder names and idNat are personal data. With a pseudonym key (a secret file the
controller's administrators generate and deploy to the agents), agents publish
``pseudonym(key, idNat)`` instead of the idNat and no names; the controller,
holding the same key, computes the pseudonyms of its roster to match cards to
professionals. Without the key, a pseudonym cannot be turned back into an idNat.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from cpsfleet.i18n import _

PREFIX = "p:"
MIN_KEY_BYTES = 16


class PseudonymKeyError(ValueError):
    """A key file that cannot be used; the message says why."""


def load_key(path: str | Path) -> bytes:
    try:
        key = Path(path).read_bytes().strip()
    except OSError as error:
        raise PseudonymKeyError(
            _("pseudonym key {path}: {error}").format(path=path, error=error.strerror)
        ) from None
    if len(key) < MIN_KEY_BYTES:
        raise PseudonymKeyError(
            _(
                "pseudonym key {path} holds {count} bytes; make one of at least 32, e.g. "
                "head -c 32 /dev/urandom | base64 > KEYFILE"
            ).format(path=path, count=len(key))
        )
    return key


def pseudonym(key: bytes, id_nat: str) -> str:
    """``p:`` and 24 hex digits of HMAC-SHA256(key, idNat): stable, irreversible without the key."""
    return PREFIX + hmac.new(key, id_nat.encode("utf-8"), hashlib.sha256).hexdigest()[:24]

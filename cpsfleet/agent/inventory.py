"""Left for ``agent/pcsc.py``, which takes ``ReaderState`` from here: the inventory's types
are the wire contract's, ``cpsfleet.schemas.documents``. Goes once pcsc.py imports from there."""

from cpsfleet.schemas.documents import ReaderState

__all__ = ["ReaderState"]

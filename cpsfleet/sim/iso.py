"""An ISO 7816-4 card with a file system: SELECT, READ BINARY, GET RESPONSE.

Behaviours that differ between real cards (how a path is written, which P2 an
application select accepts, the largest READ BINARY) are options of
``CardOptions`` so each simulated card kind can be as strict as the real one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from cpsfleet.sim import der
from cpsfleet.sim.pin import PinCounter

log = logging.getLogger("sim.apdu")

MF_FID = 0x3F00

SW_OK = b"\x90\x00"
SW_WRONG_LENGTH = b"\x67\x00"
SW_NO_CURRENT_EF = b"\x69\x86"
SW_WRONG_P1P2 = b"\x6a\x86"
SW_FILE_NOT_FOUND = b"\x6a\x82"
SW_OFFSET_OUTSIDE = b"\x6b\x00"
SW_INS_NOT_SUPPORTED = b"\x6d\x00"
SW_CHANNEL_NOT_SUPPORTED = b"\x68\x81"
SW_END_OF_FILE = b"\x62\x82"
SW_NO_RESPONSE = b"\x69\x85"
SW_DATA_NOT_FOUND = b"\x6a\x88"


@dataclass
class EF:
    """A transparent elementary file."""

    fid: int
    data: bytes


@dataclass
class DF:
    """A dedicated file; ``name`` is its application identifier, if any."""

    fid: int
    name: bytes | None = None
    children: list[DF | EF] = field(default_factory=list)

    def child(self, fid: int) -> DF | EF | None:
        return next((c for c in self.children if c.fid == fid), None)

    def find_by_name(self, name: bytes) -> list[DF] | None:
        """The chain of DFs from this one down to the DF called ``name``."""
        if self.name is not None and self.name.startswith(name):
            return [self]
        for child in self.children:
            if isinstance(child, DF) and (chain := child.find_by_name(name)):
                return [self, *chain]
        return None


@dataclass
class Apdu:
    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    le: int | None = None

    @classmethod
    def parse(cls, raw: bytes) -> Apdu:
        """A short APDU, cases 1 to 4 (ISO 7816-3 §12.1)."""
        if len(raw) < 4:
            raise ValueError(f"APDU too short: {raw.hex()}")
        cla, ins, p1, p2 = raw[:4]
        body = raw[4:]
        if not body:
            return cls(cla, ins, p1, p2)
        if len(body) == 1:
            return cls(cla, ins, p1, p2, le=body[0])
        lc = body[0]
        data = body[1 : 1 + lc]
        rest = body[1 + lc :]
        if len(data) != lc or len(rest) > 1:
            raise ValueError(f"APDU length mismatch: {raw.hex()}")
        return cls(cla, ins, p1, p2, data, rest[0] if rest else None)

    @property
    def channel(self) -> int:
        return self.cla & 0x03

    @property
    def expected(self) -> int:
        """Le as a count of bytes: 00 means 256."""
        return 256 if self.le in (None, 0) else self.le


@dataclass
class CardOptions:
    """How strict this card kind is. Defaults: a plain ISO 7816-4 card."""

    channels: frozenset[int] = frozenset({0})
    max_read: int = 256
    aid_select_wants_p2_0c: bool = False
    applet_is_root: bool = False
    # A SELECT with P2=00 asks the FCI (tag 6F) in ISO 7816-4; cards that answer it so (the
    # CPS4) set this, the others answer the FCP (tag 62) whatever P2 asks.
    fci_on_p2_00: bool = False


@dataclass
class ChannelState:
    root: list[DF]
    current: list[DF]
    ef: EF | None = None


FCP_TAG = 0x62
FCI_TAG = 0x6F


def fcp(node: DF | EF, tag: int = FCP_TAG) -> bytes:
    """The File Control Parameters template (tag 62) of a file, or with ``FCI_TAG`` the same
    parameters as File Control Information: size (80), descriptor (82, 01 a transparent
    working EF, 38 a DF), file id (83) and a DF's name (84)."""
    fid = der.tlv(0x83, node.fid.to_bytes(2, "big"))
    if isinstance(node, EF):
        size = der.tlv(0x80, len(node.data).to_bytes(2, "big"))
        return der.tlv(tag, size, der.tlv(0x82, b"\x01"), fid)
    name = der.tlv(0x84, node.name) if node.name else b""
    return der.tlv(tag, der.tlv(0x82, b"\x38"), fid, name)


class IsoCard:
    """A card answering APDUs from its file system."""

    def __init__(
        self,
        atr: bytes,
        mf: DF,
        options: CardOptions | None = None,
        pin: PinCounter | None = None,
    ) -> None:
        self.atr = atr
        self.mf = mf
        self.options = options or CardOptions()
        self.pin = pin
        self.channels: dict[int, ChannelState] = {}
        self.pending = b""
        self.handlers: dict[int, Callable[[Apdu, ChannelState], bytes]] = {
            0xA4: self.select,
            0xB0: self.read_binary,
            0xC0: self.get_response,
        }
        if pin is not None:
            self.handlers |= {0x20: self.verify, 0xCB: self.get_data}
        self.reset()

    def reset(self) -> None:
        self.channels = {n: ChannelState([self.mf], [self.mf]) for n in self.options.channels}
        self.pending = b""

    def process(self, raw: bytes) -> bytes:
        response = self._dispatch(raw)
        log.debug("APDU %s -> %s", raw.hex(" ").upper(), response.hex(" ").upper())
        return response

    def _dispatch(self, raw: bytes) -> bytes:
        try:
            apdu = Apdu.parse(raw)
        except ValueError:
            return SW_WRONG_LENGTH
        state = self.channels.get(apdu.channel)
        if state is None:
            return SW_CHANNEL_NOT_SUPPORTED
        handler = self.handlers.get(apdu.ins)
        if apdu.ins != 0xC0:
            self.pending = b""
        return handler(apdu, state) if handler else SW_INS_NOT_SUPPORTED

    def respond(self, apdu: Apdu, data: bytes) -> bytes:
        """Data at once when Le was given, else ``61 xx`` and wait for GET RESPONSE."""
        if not data:
            return SW_OK
        if apdu.le is None:
            self.pending = data
            return bytes([0x61, min(len(data), 256) & 0xFF])
        return data + SW_OK

    def get_response(self, apdu: Apdu, state: ChannelState) -> bytes:
        if not self.pending:
            return SW_NO_RESPONSE
        chunk, self.pending = self.pending[: apdu.expected], self.pending[apdu.expected :]
        if self.pending:
            return chunk + bytes([0x61, min(len(self.pending), 256) & 0xFF])
        return chunk + SW_OK

    def verify(self, apdu: Apdu, state: ChannelState) -> bytes:
        assert self.pin is not None
        return self.pin.verify(apdu.p1, apdu.p2, apdu.data)

    def get_data(self, apdu: Apdu, state: ChannelState) -> bytes:
        """The PIN's try counters; its security data object sits in the MF (or applet root)."""
        assert self.pin is not None
        if state.current[-1].fid != MF_FID:
            return SW_DATA_NOT_FOUND
        data, sw = self.pin.get_data(apdu.p1, apdu.p2, apdu.data)
        return sw if data is None else self.respond(apdu, data)

    def select(self, apdu: Apdu, state: ChannelState) -> bytes:
        if apdu.p1 == 0x04 and self.options.aid_select_wants_p2_0c and apdu.p2 != 0x0C:
            return SW_WRONG_P1P2
        chain = self._resolve(apdu, state)
        if chain is None:
            return SW_FILE_NOT_FOUND
        self._enter(state, chain, root=apdu.p1 == 0x04 and self.options.applet_is_root)
        if apdu.p2 & 0x0C == 0x0C:
            return SW_OK
        wants_fci = self.options.fci_on_p2_00 and apdu.p2 & 0x0C == 0x00
        return self.respond(apdu, fcp(chain[-1], FCI_TAG if wants_fci else FCP_TAG))

    def _enter(self, state: ChannelState, chain: list[DF | EF], root: bool) -> None:
        target = chain[-1]
        dfs = [node for node in chain if isinstance(node, DF)]
        state.current = dfs
        state.ef = target if isinstance(target, EF) else None
        if root:
            state.root = dfs

    def _resolve(self, apdu: Apdu, state: ChannelState) -> list[DF | EF] | None:
        data = apdu.data
        if apdu.p1 == 0x04:
            found = self.mf.find_by_name(data)
            return list(found) if found else None
        fids = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
        if apdu.p1 == 0x00:
            return self._by_fid(state, fids[0] if fids else MF_FID)
        if apdu.p1 in (0x01, 0x02):
            return self._walk(state.current, fids[:1])
        if apdu.p1 == 0x08:
            return self._walk(state.root, fids[1:] if fids[:1] == [MF_FID] else fids)
        if apdu.p1 == 0x09:
            start = state.root if fids[:1] == [MF_FID] else state.current
            return self._walk(start, fids[1:] if fids[:1] == [MF_FID] else fids)
        return None

    def _by_fid(self, state: ChannelState, fid: int) -> list[DF | EF] | None:
        if fid == MF_FID:
            return list(state.root)
        if fid == state.current[-1].fid:
            return list(state.current)
        return self._walk(state.current, [fid])

    @staticmethod
    def _walk(start: list[DF], fids: list[int]) -> list[DF | EF] | None:
        chain: list[DF | EF] = list(start)
        for fid in fids:
            here = chain[-1]
            node = here.child(fid) if isinstance(here, DF) else None
            if node is None:
                return None
            chain.append(node)
        return chain

    def read_binary(self, apdu: Apdu, state: ChannelState) -> bytes:
        if apdu.p1 & 0x80:
            return SW_WRONG_P1P2
        if state.ef is None:
            return SW_NO_CURRENT_EF
        if apdu.expected > self.options.max_read:
            return SW_WRONG_LENGTH
        offset = (apdu.p1 << 8) | apdu.p2
        content = state.ef.data
        if offset >= len(content):
            return SW_OFFSET_OUTSIDE
        chunk = content[offset : offset + apdu.expected]
        short = len(chunk) < apdu.expected and apdu.le not in (None, 0)
        return chunk + (SW_END_OF_FILE if short else SW_OK)

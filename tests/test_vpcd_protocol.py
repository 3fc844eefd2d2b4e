"""The card side of the vpcd protocol, against a stand-in for vpcd on loopback TCP.

The test plays vpcd with its own framing code (2-byte big-endian length, then
the bytes), so a mistake in ``cpsfleet.sim.vpcd`` cannot cancel itself out.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from cpsfleet.sim import vpcd
from cpsfleet.sim.cards import build_card
from cpsfleet.sim.faults import Faults
from cpsfleet.sim.profile import Profile

SELECT_SN_ICC = bytes.fromhex("00A4090404 3F00D003 00")
SELECT_SN_ICC_NO_FCP = bytes.fromhex("00A4090C04 3F00D003")
READ_SN_ICC = bytes.fromhex("00B000000C")
SN_ICC = bytes.fromhex("5A0A 8025000001 99213845 0F")
FCP_SN_ICC = bytes.fromhex("620B 8002000C 820101 8302D003")
OK = bytes.fromhex("9000")
TIMEOUT = 5.0

Link = tuple[socket.socket, socket.socket]


def frame(payload: bytes) -> bytes:
    return len(payload).to_bytes(2, "big") + payload


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, "the card closed the connection"
        data += chunk
    return data


def read_frame(sock: socket.socket) -> bytes:
    return recv_exactly(sock, int.from_bytes(recv_exactly(sock, 2), "big"))


def ask(sock: socket.socket, message: bytes) -> bytes:
    sock.sendall(frame(message))
    return read_frame(sock)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def accept(server: socket.socket) -> socket.socket:
    connection, _ = server.accept()
    connection.settimeout(TIMEOUT)
    return connection


@pytest.fixture
def card() -> vpcd.Card:
    return build_card(Profile(kind="cps3", serial="99213845"))


@pytest.fixture
def link() -> Iterator[Link]:
    """(vpcd's end, the card's end) of one loopback TCP connection.

    Not ``socket.socketpair()``: that is AF_UNIX on Linux, where the TCP_QUICKACK
    that ``vpcd.receive`` sets is refused; vpcd only ever speaks TCP.
    """
    with socket.create_server(("127.0.0.1", 0)) as server:
        card_end = socket.create_connection(server.getsockname(), timeout=TIMEOUT)
        vpcd_end = accept(server)
    with vpcd_end, card_end:
        yield vpcd_end, card_end


@pytest.fixture
def served(link: Link, card: vpcd.Card) -> Iterator[socket.socket]:
    """vpcd's end of a connection the card answers on, until the test ends."""
    vpcd_end, card_end = link
    stop = threading.Event()
    thread = threading.Thread(target=vpcd.serve_connection, args=(card_end, card, stop))
    thread.start()
    yield vpcd_end
    stop.set()
    thread.join(timeout=TIMEOUT)
    assert not thread.is_alive(), "serve_connection did not stop when asked"


def run_play(card: vpcd.Card, port: int, stop: threading.Event) -> threading.Thread:
    thread = threading.Thread(
        target=vpcd.play, args=(card, "127.0.0.1", port, stop), kwargs={"retry_delay": 0.05}
    )
    thread.start()
    return thread


# --- framing ---------------------------------------------------------------------------------


def test_send_prefixes_a_two_byte_big_endian_length(link: Link) -> None:
    vpcd_end, card_end = link
    payload = bytes(range(256)) + bytes(44)
    vpcd.send(card_end, payload)
    assert recv_exactly(vpcd_end, 302) == b"\x01\x2c" + payload


def test_receive_waits_for_the_whole_message_sent_in_pieces(link: Link) -> None:
    vpcd_end, card_end = link
    message = frame(SELECT_SN_ICC)
    for piece in (message[:1], message[1:2], message[2:5], message[5:]):
        vpcd_end.sendall(piece)
        time.sleep(0.01)
    assert vpcd.receive(card_end) == SELECT_SN_ICC


def test_receive_reports_a_closed_reader(link: Link) -> None:
    vpcd_end, card_end = link
    vpcd_end.sendall(b"\x00\x05AB")
    vpcd_end.close()
    with pytest.raises(vpcd.VpcdClosed):
        vpcd.receive(card_end)


# --- control codes and APDUs --------------------------------------------------------------------


def test_get_atr_is_answered_with_the_atr(served: socket.socket, card: vpcd.Card) -> None:
    assert ask(served, b"\x04") == card.atr == bytes.fromhex("3BAC00402A001225006480000310009000")


def test_apdu_gets_the_card_response(served: socket.socket) -> None:
    assert ask(served, SELECT_SN_ICC) == FCP_SN_ICC + OK
    assert ask(served, READ_SN_ICC) == SN_ICC + OK


@pytest.mark.parametrize("control", [0x00, 0x01, 0x02], ids=["power off", "power on", "reset"])
def test_power_and_reset_get_no_reply_and_reset_the_card(
    served: socket.socket, control: int
) -> None:
    assert ask(served, SELECT_SN_ICC_NO_FCP) == OK
    served.sendall(frame(bytes([control])))
    # The next frame answers the READ BINARY: no reply came for the control code,
    # and the card forgot the file selected before it.
    assert ask(served, READ_SN_ICC) == bytes.fromhex("6986")


# --- play: inserting the card into a reader ---------------------------------------------------


def test_play_keeps_retrying_while_no_reader_listens_until_stopped(card: vpcd.Card) -> None:
    stop = threading.Event()
    thread = run_play(card, free_port(), stop)
    time.sleep(0.5)
    assert thread.is_alive(), "play gave up although it was not stopped"
    stop.set()
    thread.join(timeout=2)
    assert not thread.is_alive()


def test_play_inserts_the_card_once_the_reader_starts_listening(card: vpcd.Card) -> None:
    port, stop = free_port(), threading.Event()
    thread = run_play(card, port, stop)
    time.sleep(0.3)
    with socket.create_server(("127.0.0.1", port)) as server:
        server.settimeout(TIMEOUT)
        with accept(server) as connection:
            assert ask(connection, b"\x04") == card.atr
            stop.set()
            thread.join(timeout=2)
    assert not thread.is_alive()


def test_play_reinserts_a_fresh_card_after_the_reader_went_away(card: vpcd.Card) -> None:
    stop = threading.Event()
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(TIMEOUT)
        thread = run_play(card, server.getsockname()[1], stop)
        with accept(server) as first:
            assert ask(first, SELECT_SN_ICC_NO_FCP) == OK
        with accept(server) as second:
            assert ask(second, b"\x04") == card.atr
            assert ask(second, READ_SN_ICC) == bytes.fromhex("6986")
            stop.set()
            thread.join(timeout=2)
    assert not thread.is_alive()


def test_pulled_card_closes_the_connection_and_play_returns() -> None:
    pulled = build_card(Profile(kind="cps3", faults=Faults(remove_after_apdus=1)))
    stop = threading.Event()
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(TIMEOUT)
        thread = run_play(pulled, server.getsockname()[1], stop)
        with accept(server) as connection:
            assert ask(connection, SELECT_SN_ICC) == FCP_SN_ICC + OK
            connection.sendall(frame(READ_SN_ICC))
            assert connection.recv(2) == b""
        thread.join(timeout=2)
    assert not thread.is_alive() and not stop.is_set()

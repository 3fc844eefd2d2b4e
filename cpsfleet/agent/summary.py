"""What an administrator reads after ``cpsfleet agent scan``: the summary and the exit code."""

from __future__ import annotations

from collections.abc import Iterator

from cpsfleet.schemas.documents import Card, Certificate, Cryptolib, Pin, Status

EXIT_READY = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2
EXIT_PCSC_UNAVAILABLE = 3


def findings(status: Status) -> list[str]:
    """Everything on this workstation that stands between a professional and a working CPS."""
    found = [f"{p.where}: {p.message}" for p in status.problems]
    if not status.pcsc.available:
        found.append(f"PC/SC service unavailable ({status.pcsc.error}): start pcscd")
    elif not status.readers:
        found.append("no PC/SC reader: plug in a card reader")
    if not status.cryptolib.installed:
        found.append("Cryptolib CPS is not installed: install it from the ANS site")
    found += [f"cryptolib: {p.message}" for p in status.cryptolib.problems]
    for reader in status.readers:
        found += [f"{reader.name}: {p.message}" for p in reader.problems]
        if reader.card:
            found += [f"{reader.name}: {message}" for message in card_findings(reader.card)]
    return found


def card_findings(card: Card) -> Iterator[str]:
    yield from (f"{p.where}: {p.message}" for p in card.problems)
    for cert in card.certificates:
        if cert.error:
            yield f"{cert.role} certificate unreadable: {cert.error}"
        elif cert.expired:
            yield f"{cert.role} certificate of card {card.serial} expired on {cert.not_after}"
    if card.pin is not None and card.pin.tries_left == 0:
        yield (
            f"the PIN of card {card.serial} is blocked: unblock it with the PUK in CPS Gestion "
            "(or ask for a new PIN mailer)"
        )


def exit_code(status: Status) -> int:
    if not status.pcsc.available:
        return EXIT_PCSC_UNAVAILABLE
    return EXIT_PROBLEMS if findings(status) else EXIT_READY


def describe_cryptolib(cryptolib: Cryptolib) -> str:
    if not cryptolib.installed:
        return "not installed"
    library = "present" if cryptolib.pkcs11_library_present else "MISSING"
    gestion = "present" if cryptolib.cps_gestion else "missing"
    version = cryptolib.version or "version unknown"
    return (
        f"{version} (PKCS#11 library {library}: {cryptolib.pkcs11_library}; CPS Gestion {gestion})"
    )


def describe_certificate(cert: Certificate) -> str:
    if cert.error:
        return f"{cert.role}: unreadable ({cert.error})"
    holder = " ".join(filter(None, (cert.surname, cert.given_name))) or cert.subject
    identity = f"{(cert.id_type or 'id').upper()} {cert.id_nat}"
    when = "EXPIRED" if cert.expired else f"{cert.days_left} days left"
    return f"{cert.role}: {holder}, {cert.profession}, {identity}, until {cert.not_after} ({when})"


def describe_pin(pin: Pin) -> str:
    if pin.tries_left is None:
        return f"PIN: {pin.error}"
    state = {0: " (BLOCKED)", 1: " (last try)"}.get(pin.tries_left, "")
    return f"PIN: {pin.tries_left} of {pin.tries_max} tries left{state}"


def describe_card(card: Card) -> Iterator[str]:
    serial = f" serial {card.serial}" if card.serial else ""
    yield f"    {card.kind_label}{serial}  ATR {card.atr}"
    yield from (f"      {describe_certificate(cert)}" for cert in card.certificates)
    if card.pin is not None:
        yield f"      {describe_pin(card.pin)}"


def render(status: Status) -> str:
    host = status.host
    pcsc = "available" if status.pcsc.available else f"UNAVAILABLE: {status.pcsc.error}"
    lines = [
        f"Host       {host.hostname} ({host.os}, {host.os_version})  id {host.id}"
        + (f"  site {host.site}" if host.site else ""),
        f"PC/SC      {pcsc}",
        f"Cryptolib  {describe_cryptolib(status.cryptolib)}",
        f"Readers    {len(status.readers)}",
    ]
    for reader in status.readers:
        lines.append(f"  {reader.name}: {reader.state.replace('_', ' ')}")
        if reader.card:
            lines += describe_card(reader.card)
    found = findings(status)
    lines.append("Problems   none" if not found else "Problems")
    lines += (f"  - {finding}" for finding in found)
    lines.append(
        f"Ready for CPS cards: {'yes' if not found else 'no'}  (scan took {status.duration_ms} ms)"
    )
    return "\n".join(lines)

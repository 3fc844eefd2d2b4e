"""What an administrator reads after ``cpsfleet agent scan``: the summary and the exit code."""

from __future__ import annotations

from collections.abc import Iterator

from cpsfleet.i18n import _, medium_date, ngettext
from cpsfleet.schemas import times
from cpsfleet.schemas.documents import Card, Certificate, Cryptolib, Pin, Status
from cpsfleet.schemas.words import WORDS

EXIT_READY = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2
EXIT_PCSC_UNAVAILABLE = 3


def findings(status: Status) -> list[str]:
    """Everything on this workstation that stands between a professional and a working CPS."""
    found = [f"{p.where}: {said(p.message)}" for p in status.problems]
    if not status.pcsc.available:
        found.append(
            _("PC/SC service unavailable ({error}): start pcscd").format(error=status.pcsc.error)
        )
    elif not status.readers:
        found.append(_("no PC/SC reader: plug in a card reader"))
    if not status.cryptolib.installed:
        found.append(_("Cryptolib CPS is not installed: install it from the ANS site"))
    found += [f"cryptolib: {said(p.message)}" for p in status.cryptolib.problems]
    for reader in status.readers:
        found += [f"{reader.name}: {said(p.message)}" for p in reader.problems]
        if reader.card:
            found += [f"{reader.name}: {message}" for message in card_findings(reader.card)]
    return found


def card_findings(card: Card) -> Iterator[str]:
    yield from (f"{p.where}: {said(p.message)}" for p in card.problems)
    for cert in card.certificates:
        if cert.error:
            yield _("{role} certificate unreadable: {error}").format(
                role=_role(cert.role), error=cert.error
            )
        elif cert.expired:
            yield _("{role} certificate of card {serial} expired on {date}").format(
                role=_role(cert.role), serial=card.serial, date=_day(cert.not_after)
            )
    if card.pin is not None and card.pin.tries_left == 0:
        yield _(
            "the PIN of card {serial} is blocked: unblock it with the PUK in CPS Gestion "
            "(or ask for a new PIN mailer)"
        ).format(serial=card.serial)


def said(message: str) -> str:
    """A problem of the status document as the reader reads it: the agent's own advice
    (``N_`` where it is written) translated; what a card, PC/SC or the system said, which
    the catalog cannot know, as it was said."""
    return _(message) if message else message


def _role(role: str) -> str:
    """A certificate's role as a word: authentication, signature."""
    return _(WORDS[role]) if role in WORDS else role


def exit_code(status: Status) -> int:
    if not status.pcsc.available:
        return EXIT_PCSC_UNAVAILABLE
    return EXIT_PROBLEMS if findings(status) else EXIT_READY


def describe_cryptolib(cryptolib: Cryptolib) -> str:
    if not cryptolib.installed:
        return _("not installed")
    library = _("present") if cryptolib.pkcs11_library_present else _("MISSING")
    gestion = _("present") if cryptolib.cps_gestion else _("missing")
    version = cryptolib.version or _("version unknown")
    return _("{version} (PKCS#11 library {library}: {path}; CPS Gestion {gestion})").format(
        version=version, library=library, path=cryptolib.pkcs11_library, gestion=gestion
    )


def describe_certificate(cert: Certificate) -> str:
    if cert.error:
        return _("{role}: unreadable ({error})").format(role=_role(cert.role), error=cert.error)
    holder = " ".join(filter(None, (cert.surname, cert.given_name))) or cert.subject
    identity = f"{(cert.id_type or 'id').upper()} {cert.id_nat}"
    left = cert.days_left if cert.days_left is not None else 0
    when = (
        _("EXPIRED")
        if cert.expired
        else ngettext("{days} day left", "{days} days left", left).format(days=cert.days_left)
    )
    return _("{role}: {holder}, {profession}, {identity}, until {date} ({when})").format(
        role=_role(cert.role),
        holder=holder,
        profession=cert.profession,
        identity=identity,
        date=_day(cert.not_after),
        when=when,
    )


def _day(wire: str | None) -> str:
    """A certificate's date as people read it, on this workstation's clock."""
    if wire is None:
        return "?"
    try:
        return medium_date(times.parse(wire).astimezone())
    except (times.TimeError, OverflowError, ValueError):  # year 1 or 9999 on a local clock
        return wire


def describe_pin(pin: Pin) -> str:
    if pin.tries_left is None:
        return _("PIN: {error}").format(error=pin.error)
    state = {0: _(" (BLOCKED)"), 1: _(" (last try)")}.get(pin.tries_left, "")
    left = _("PIN: {left} of {most} tries left").format(left=pin.tries_left, most=pin.tries_max)
    return f"{left}{state}"


def describe_card(card: Card) -> Iterator[str]:
    serial = _(" serial {serial}").format(serial=card.serial) if card.serial else ""
    yield f"    {card.kind_label}{serial}  ATR {card.atr}"
    yield from (f"      {describe_certificate(cert)}" for cert in card.certificates)
    if card.pin is not None:
        yield f"      {describe_pin(card.pin)}"


def render(status: Status) -> str:
    host = status.host
    pcsc = (
        _("available")
        if status.pcsc.available
        else _("UNAVAILABLE: {error}").format(error=status.pcsc.error)
    )
    site = _("  site {site}").format(site=host.site) if host.site else ""
    heads = [_("Host"), _("PC/SC"), _("Cryptolib"), _("Readers"), _("Problems")]
    width = max(len(head) for head in heads) + 2
    host_line = f"{host.hostname} ({host.os}, {host.os_version})  id {host.id}{site}"
    lines = [
        f"{_('Host'):<{width}}{host_line}",
        f"{_('PC/SC'):<{width}}{pcsc}",
        f"{_('Cryptolib'):<{width}}{describe_cryptolib(status.cryptolib)}",
        f"{_('Readers'):<{width}}{len(status.readers)}",
    ]
    for reader in status.readers:
        lines.append(f"  {reader.name}: {_reader_state(reader.state)}")
        if reader.card:
            lines += describe_card(reader.card)
    found = findings(status)
    none = _("none")
    lines.append(f"{_('Problems'):<{width}}{none}" if not found else _("Problems"))
    lines += (f"  - {finding}" for finding in found)
    ready = _("yes") if not found else _("no")
    lines.append(
        _("Ready for CPS cards: {ready}  (scan took {ms} ms)").format(
            ready=ready, ms=status.duration_ms
        )
    )
    return "\n".join(lines)


def _reader_state(state: str) -> str:
    return _(WORDS[state]) if state in WORDS else state.replace("_", " ")

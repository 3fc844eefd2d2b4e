"""The words a person reads in the command's tables: each column's header, and the values
that are tokens in the data (a severity, a state), in the current language (see
``cpsfleet.i18n``). ``--json`` keeps the keys and tokens as they are."""

from __future__ import annotations

from datetime import date, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from cpsfleet.i18n import N_, _, current, medium_date
from cpsfleet.schemas.words import KIND_WORDS, WORDS

COLUMNS = {
    "acknowledged_by": N_("acknowledged by"),
    "action": N_("action"),
    "actor": N_("who"),
    "adeli": N_("ADELI"),
    "at": N_("when"),
    "card_expires": N_("card expires"),
    "card_present": N_("card present"),
    "card_serial": N_("card serial"),
    "card_updated": N_("card updated"),
    "cards": N_("cards"),
    "created_at": N_("created"),
    "created_by": N_("by"),
    "critical": N_("critical"),
    "cryptolib_version": N_("Cryptolib CPS"),
    "days_left": N_("days left"),
    "detail": N_("detail"),
    "details": N_("details"),
    "display_name": N_("full name"),
    "ecps_activated": N_("e-CPS activated"),
    "email": N_("e-mail"),
    "email_on_file": N_("e-mail on file"),
    "expires": N_("expires"),
    "failures": N_("failures"),
    "given_name": N_("given name"),
    "host": N_("host"),
    "host_id": N_("host"),
    "hostname": N_("hostname"),
    "id": N_("id"),
    "id_nat": N_("idNat"),
    "in_reader": N_("in a reader"),
    "info": N_("info"),
    "kind": N_("card"),
    "last_error": N_("last error"),
    "label": N_("label"),
    "last_error_at": N_("last error at"),
    "last_sign_in_at": N_("last sign-in"),
    "last_used_at": N_("last used"),
    "last_notified_at": N_("last notified"),
    "last_seen": N_("last seen"),
    "last_seen_at": N_("last seen at"),
    "last_seen_host": N_("last seen on"),
    "last_status_at": N_("last status"),
    "last_success_at": N_("last success"),
    "message": N_("message"),
    "mobile_on_file": N_("mobile on file"),
    "name": N_("name"),
    "next_attempt_at": N_("next attempt"),
    "next_step": N_("next step"),
    "outcome": N_("outcome"),
    "notifications": N_("notifications"),
    "pcsc_available": N_("PC/SC"),
    "pin_severity": N_("PIN severity"),
    "pin_tries_left": N_("PIN tries left"),
    "pin_tries_max": N_("PIN tries"),
    "presence": N_("presence"),
    "profession": N_("profession"),
    "profession_title": N_("profession"),
    "readers": N_("readers"),
    "reader": N_("reader"),
    "reason": N_("reason"),
    "resolution": N_("why resolved"),
    "resolved_at": N_("resolved at"),
    "role": N_("role"),
    "rpps": N_("RPPS"),
    "rule": N_("rule"),
    "serial": N_("serial"),
    "severity": N_("severity"),
    "since": N_("since"),
    "site": N_("site"),
    "sites": N_("sites"),
    "source": N_("from"),
    "started_at": N_("started"),
    "state": N_("state"),
    "state_label": N_("state"),
    "status": N_("status"),
    "subject": N_("subject"),
    "superseded_by": N_("superseded by"),
    "surname": N_("surname"),
    "target": N_("target"),
    "until": N_("until"),
    "user": N_("user"),
    "warning": N_("warning"),
    "where": N_("where"),
}
# The columns whose tokens are shown as words (cpsfleet.schemas.words), each with its table.
VALUES = {
    "severity": WORDS,
    "pin_severity": WORDS,
    "status": WORDS,
    "kind": KIND_WORDS,
    "state": WORDS,
    "presence": WORDS,
}


# Where the times of the tables are read: the fleet's zone once a command has loaded the
# settings (``show_times_in``), Europe/Paris (the default fleet's) until then.
_zone: list[tzinfo] = [ZoneInfo("Europe/Paris")]


# Columns holding a day as ISO 8601 text (readiness: "2026-12-13"), kept so in CSV and JSON.
DATE_COLUMNS = frozenset({"card_expires", "card_updated"})


def show_times_in(zone: tzinfo) -> None:
    _zone[0] = zone


def header(column: str) -> str:
    """The column's header in the current language (its key if it has no label)."""
    label = COLUMNS.get(column)
    return _(label) if label is not None else column


def value(column: str, shown: Any) -> Any:
    """As a person reads it in the current language: a token of the data as a word, a time
    as "13 déc. 2026 09:30" in the fleet's zone, yes or no, 1 234; others as they are."""
    if isinstance(shown, bool):
        return _("yes") if shown else _("no")
    if isinstance(shown, datetime):
        try:
            local = shown.astimezone(_zone[0])
        except OverflowError:  # year 1 or 9999 beyond the zone's offset
            local = shown
        return f"{medium_date(local)} {local:%H:%M}"
    if column in DATE_COLUMNS and isinstance(shown, str):
        try:
            return medium_date(date.fromisoformat(shown))
        except ValueError:
            return shown
    if isinstance(shown, int) and abs(shown) >= 10_000 and current() == "fr":
        return f"{shown:,}".replace(",", "\u202f")  # a narrow no-break space: 12 345
    words = VALUES.get(column)
    if words is None or not isinstance(shown, str) or shown not in words:
        return shown
    return _(words[shown])

"""The dashboard's language and the reader's conventions: which of French and English a
request is answered in, the switch that sets it, and dates, times and numbers as its
readers write them (Babel's CLDR data).

The language of a page is, in this order: the switch's cookie (the FR/EN links of every
page), the browser's ``Accept-Language`` when it prefers one of ours, then the controller's
(``ControllerSettings.spoken``: its ``language``, else the locale's if English, else French).
The machine paths (``/api/v1``, ``/metrics``, ``/export/``) are always English, as their keys.
"""

from __future__ import annotations

import gettext as gnu
from collections.abc import Mapping
from datetime import date, datetime
from functools import cache
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_time
from babel.numbers import format_decimal
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse

from cpsfleet import i18n
from cpsfleet.schemas.times import in_zone, never_expires
from cpsfleet.schemas.words import WORDS

COOKIE = "cpsfleet_lang"
# A year: the choice of a person at this browser, not a secret.
COOKIE_AGE = 365 * 24 * 3600
# The names of the languages on the switch, each in its own language.
NAMES = {"fr": "Français", "en": "English"}

router = APIRouter(include_in_schema=False)


@cache
def translations(spoken: str) -> gnu.NullTranslations:
    """The dashboard's catalog first, then the others (``i18n.translations``): a word the
    command line translates otherwise (``card present`` as an event) reads as the pages
    mean it."""
    if spoken == "en":
        return gnu.NullTranslations()
    own = gnu.translation("dashboard", i18n.LOCALES, languages=[spoken], fallback=True)
    own.add_fallback(i18n.translations(spoken))
    return own


def _(message: str) -> str:
    """``message`` in the current language, the dashboard's catalog first."""
    return translations(i18n.current()).gettext(message)


def ngettext(singular: str, plural: str, count: int) -> str:
    return translations(i18n.current()).ngettext(singular, plural, count)


def word(token: Any) -> str:
    """A token (``critical``, ``online``, ``renew_card``…) as a word of the current language."""
    if token is None:
        return ""
    text = str(token)
    return _(WORDS[text]) if text in WORDS else text


def preferred(header: str | None) -> str | None:
    """The language of ours an ``Accept-Language`` header prefers, or None.

    Each range has its weight (``q``, 1 unless given); the heaviest of ``fr`` and ``en`` wins
    (``fr-CA`` is French); ``*`` and the others choose nothing."""
    best: tuple[float, int, str] | None = None
    for index, part in enumerate((header or "").split(",")):
        tag, *parameters = (piece.strip() for piece in part.split(";"))
        language = tag.split("-")[0].lower()
        if language not in i18n.LANGUAGES:
            continue
        weight = 1.0
        for parameter in parameters:
            name, _sep, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        if weight <= 0:
            continue
        candidate = (weight, -index, language)
        if best is None or candidate > best:
            best = candidate
    return best[2] if best else None


def choose(cookies: Mapping[str, str], accept_language: str | None, configured: str) -> str:
    """The switch's cookie, else the browser's preference among ours, else ``configured``."""
    chosen = cookies.get(COOKIE, "")
    if chosen in i18n.LANGUAGES:
        return chosen
    return preferred(accept_language) or configured


def of(request: Request) -> str:
    """The language chosen for ``request`` (by the middleware); the current one otherwise."""
    return str(getattr(request.state, "language", None) or i18n.current())


# --- the gettext callables of the templates (jinja2.ext.i18n, new style) -------------------


# Jinja fills in the variables itself (``%(name)s``, escaped), after these return.
def gettext(message: str) -> str:
    return _(message)


def ngettext_(singular: str, plural: str, count: int) -> str:
    return ngettext(singular, plural, count)


# --- the reader's conventions ---------------------------------------------------------------


def when(moment: datetime | str | None, zone: ZoneInfo) -> str:
    """A moment in the fleet's time zone: ``13 déc. 2026 14:05``, ``Dec 13, 2026 14:05``."""
    if moment is None or moment == "":
        return ""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    if never_expires(moment):
        return _("no expiry")  # RFC 5280's 9999-12-31T23:59:59Z
    local = in_zone(moment, zone)
    spoken = i18n.current()
    return f"{format_date(local, 'medium', spoken)} {format_time(local, 'HH:mm', locale=spoken)}"


def day(value: date | str | None) -> str:
    """A day: ``13 déc. 2026``; ``9999-12-31`` is no expiry."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        if value.startswith("9999-12-31"):
            return _("no expiry")
        value = date.fromisoformat(value[:10])
    return format_date(value, "medium", locale=i18n.current())


def month(value: str) -> str:
    """``2026-12`` as ``déc. 2026`` or ``Dec 2026``: a month that cannot be read as a day."""
    year, number = value.split("-")
    return format_date(date(int(year), int(number), 1), "MMM y", locale=i18n.current())


def number(value: Any) -> str:
    """``1 234`` in French, ``1,234`` in English; anything not a number as is."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "" if value is None else str(value)
    return format_decimal(value, locale=i18n.current())


# --- the switch -------------------------------------------------------------------------------


def switch_link(language: str, path: str, query: str) -> str:
    """The link that sets ``language`` and comes back to this page."""
    target = path + (f"?{query}" if query else "")
    return f"/language/{language}?{urlencode({'next': target})}"


@router.get("/language/{language}")
def switch(language: str, next: str = "/") -> RedirectResponse:
    """Set the dashboard's language in this browser (a cookie) and go back to ``next``."""
    local = next.startswith("/") and not next.startswith("//") and len(next) <= 1024
    response = RedirectResponse(next if local else "/", status_code=303)
    if language in i18n.LANGUAGES:
        response.set_cookie(COOKIE, language, max_age=COOKIE_AGE, samesite="lax")
    return response

"""What people read, in their language: French by default, English on request.

The messages are written in English in the code, marked ``_("...")`` (or ``N_("...")``
where they are defined and translated later), extracted by Babel into
``locales/cpsfleet.pot`` and translated in ``locales/fr/LC_MESSAGES/cpsfleet.po``; the
build compiles each ``.po`` to its ``.mo`` (setup.py), which the standard library's
``gettext`` reads at run time: no translation library is needed on a workstation.

The language of a piece of work is a context variable: ``use("en")`` around a command, a
request or a notification; ``_`` translates into it. ``choose`` decides it from an explicit
choice (``--lang``, the configuration's ``language``), then ``CPSFLEET_LANG``, then the locale
(``LC_ALL``, ``LC_MESSAGES``, ``LANG``): French unless English is asked for or the locale is
English.
Machine-readable output (JSON, the API, MQTT, Prometheus, CSV keys) is never translated.
"""

from __future__ import annotations

import gettext
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import date, datetime
from functools import cache
from pathlib import Path

# One catalog per part, so that each part's messages are translated apart: the command line
# and the agent ("cpsfleet"), the findings, readiness and notifications ("messages"), the
# dashboard ("dashboard"). Babel's mapping of each is babel.cfg, babel-messages.cfg,
# babel-dashboard.cfg.
DOMAINS = ("cpsfleet", "messages", "dashboard")
DOMAIN = DOMAINS[0]
LOCALES = Path(__file__).parent / "locales"
LANGUAGES = ("fr", "en")
DEFAULT = "fr"
# cpsfleet's own choice in the environment, before the locale (which names a locale the
# machine may not have: Python and Ansible refuse to start with one that is not installed).
ENVIRONMENT = "CPSFLEET_LANG"
# The locale variables, in the order POSIX gives them precedence for messages.
LOCALE_VARIABLES = ("LC_ALL", "LC_MESSAGES", "LANG")

_language: ContextVar[str] = ContextVar("cpsfleet_language", default=DEFAULT)


class LanguageError(ValueError):
    """A language cpsfleet does not speak; the message lists those it does."""


def check(language: str) -> str:
    """``language`` if cpsfleet speaks it (``fr``, ``en``), else LanguageError."""
    if language not in LANGUAGES:
        raise LanguageError(
            _("unknown language {language}: use one of {languages}").format(
                language=repr(language), languages=", ".join(LANGUAGES)
            )
        )
    return language


def choose(explicit: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """The language to speak: ``explicit`` if given, else ``CPSFLEET_LANG``, else the
    locale's when it is one of ours (``en_GB.UTF-8`` is English), else French."""
    if explicit:
        return check(explicit)
    if chosen := (environ or {}).get(ENVIRONMENT):
        return check(chosen)
    for name in LOCALE_VARIABLES:
        value = (environ or {}).get(name, "")
        if value:  # the first one set decides, as for the C library
            spoken = value.split(".")[0].split("_")[0].lower()
            return spoken if spoken in LANGUAGES else DEFAULT
    return DEFAULT


def current() -> str:
    return _language.get()


def set_language(language: str) -> None:
    """Speak ``language`` from now on in this context (a command's whole run)."""
    _language.set(check(language))


@contextmanager
def use(language: str) -> Iterator[None]:
    """Speak ``language`` inside the block (a request, a notification)."""
    token = _language.set(check(language))
    try:
        yield
    finally:
        _language.reset(token)


@cache
def translations(language: str) -> gettext.NullTranslations:
    """The compiled catalogs of ``language``, one after the other; English is the code's
    own words."""
    if language == "en":
        return gettext.NullTranslations()
    first, *others = (
        gettext.translation(domain, LOCALES, languages=[language], fallback=True)
        for domain in DOMAINS
    )
    for other in others:
        first.add_fallback(other)
    return first


def _(message: str) -> str:
    """``message`` in the current language."""
    return translations(_language.get()).gettext(message)


def ngettext(singular: str, plural: str, count: int) -> str:
    """The singular or plural of a message for ``count``, in the current language."""
    return translations(_language.get()).ngettext(singular, plural, count)


def N_(message: str) -> str:  # noqa: N802 (gettext's name for a marker)
    """Mark ``message`` for extraction where it is defined; ``_`` translates it when shown."""
    return message


MONTHS = (
    *(N_("Jan"), N_("Feb"), N_("Mar"), N_("Apr"), N_("May"), N_("Jun")),
    *(N_("Jul"), N_("Aug"), N_("Sep"), N_("Oct"), N_("Nov"), N_("Dec")),
)


def medium_date(day: date | datetime) -> str:
    """A date as people read it in the current language: "13 déc. 2026", "Dec 13, 2026"
    (without a library: the agent has none); an aware time is read where it is."""
    month = _(MONTHS[day.month - 1])
    if _language.get() == "fr":
        return f"{day.day} {month} {day.year}"
    return f"{month} {day.day}, {day.year}"


def decimal(value: float, places: int = 1) -> str:
    """A measure as people read it in the current language: "2,5" in French, "2.5" in
    English (without a library, like ``medium_date``)."""
    shown = f"{value:.{places}f}"
    return shown.replace(".", ",") if _language.get() == "fr" else shown

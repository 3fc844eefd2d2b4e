"""``cpsfleet controller export hosts|cards|readiness``: the fleet as CSV, XLSX or JSON files.

``register(app)`` adds the ``export`` group to the controller's Typer app. Each command
checks its options, reads its rows as the dashboard lists them (``cpsfleet.controller.web.data``,
with the listings' filters) and writes them through ``cpsfleet.controller.web.exports`` to
standard output or, with ``--output``, to a file replaced only once complete (XLSX, a binary
file, only to a file). Errors become one ``error: ...`` line on stderr and exit code 2.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any

import typer

from cpsfleet.clihelp import App
from cpsfleet.controller.cli.common import (
    CONFIG,
    DATABASE,
    HOST_OF_CARDS,
    ONE_HOST,
    SEVERITY_OF_CARDS,
    SEVERITY_OF_HOSTS,
    SEVERITY_OF_PROFESSIONALS,
    SITE_OF_CARDS,
    SITE_OF_HOSTS,
    SITE_OF_PROFESSIONALS,
    check_severity,
    fail,
    filters,
    host_option,
    open_store,
    settings_or_exit,
    severity_option,
    site_option,
)
from cpsfleet.controller.filters import Filters
from cpsfleet.controller.web import data as webdata
from cpsfleet.controller.web import exports
from cpsfleet.controller.web.exports import BINARY_FORMATS, FORMATS, ExportError, Format

FORMAT = typer.Option(
    "csv",
    "--format",
    help="csv (RFC 4180, UTF-8, with a header row; text that would start a spreadsheet formula "
    "gets a leading '), csv-excel (the same with ; separators and a UTF-8 byte order mark, "
    "which Excel in French opens on a double-click), xlsx (an Excel workbook, typed cells, times "
    "in the fleet's time zone; needs --output) or json (values exactly as stored).",
)
OUTPUT = typer.Option(
    None,
    "--output",
    metavar="FILE",
    help="Write to this file (replaced only once the export is complete) instead of stdout.",
)


def register(app: typer.Typer) -> None:
    """Add ``export hosts``, ``export cards`` and ``export readiness`` to ``app``."""
    export = App(
        help="Export the fleet's hosts, cards or readiness as CSV, XLSX or JSON.",
        no_args_is_help=True,
    )
    export.command("hosts")(export_hosts)
    export.command("cards")(export_cards)
    export.command("readiness")(export_readiness)
    app.add_typer(export, name="export")


def export_hosts(
    site: str | None = site_option(SITE_OF_HOSTS),
    severity: str | None = severity_option(SEVERITY_OF_HOSTS),
    host: str | None = host_option(ONE_HOST),
    output_format: str = FORMAT,
    output: Path | None = OUTPUT,
    config: Path | None = CONFIG,
    database: Path | None = DATABASE,
) -> None:
    """Every host: presence, last report, reader and card counts, Cryptolib, open findings."""
    form = _format(output_format, output)
    check_severity(severity)
    settings = settings_or_exit(config)
    with open_store(database or Path(settings.database)) as store:
        rows = webdata.hosts(store, filters(store, site, severity, host))
    _deliver(rows, exports.HOST_COLUMNS, form, output, settings.thresholds.zone, "hosts")


def export_cards(
    site: str | None = site_option(SITE_OF_CARDS),
    severity: str | None = severity_option(SEVERITY_OF_CARDS),
    host: str | None = host_option(HOST_OF_CARDS),
    output_format: str = FORMAT,
    output: Path | None = OUTPUT,
    config: Path | None = CONFIG,
    database: Path | None = DATABASE,
) -> None:
    """Every card, soonest expiry first: holder, idNat, expiry, where last seen, in a reader now."""
    form = _format(output_format, output)
    check_severity(severity)
    settings = settings_or_exit(config)
    with open_store(database or Path(settings.database)) as store:
        chosen = filters(store, site, severity, host)
        rows = webdata.cards(store, datetime.now(UTC), settings.thresholds, chosen)
    _deliver(rows, exports.CARD_COLUMNS, form, output, settings.thresholds.zone, "cards")


def export_readiness(
    site: str | None = site_option(SITE_OF_PROFESSIONALS),
    severity: str | None = severity_option(SEVERITY_OF_PROFESSIONALS),
    output_format: str = FORMAT,
    output: Path | None = OUTPUT,
    config: Path | None = CONFIG,
    database: Path | None = DATABASE,
) -> None:
    """Each professional's readiness state, next step and card, as controller readiness --csv
    has it."""
    form = _format(output_format, output)
    check_severity(severity)
    settings = settings_or_exit(config)
    with open_store(database or Path(settings.database)) as store:
        now, key = datetime.now(UTC), settings.pseudonym_key
        rows = webdata.readiness(store, now, settings.thresholds, key, Filters(site, severity))
    zone = settings.thresholds.zone
    _deliver(rows, exports.READINESS_COLUMNS, form, output, zone, "readiness")


def _format(name: str, output: Path | None) -> Format:
    form = next((known for known in FORMATS if known == name.lower()), None)
    if form is None:
        raise fail(f"--format must be one of {', '.join(FORMATS)}, not {name!r}")
    if form in BINARY_FORMATS and output is None:
        raise fail(f"--format {form} writes a binary file: give it --output")
    return form


def _deliver(
    rows: list[dict[str, Any]],
    columns: Sequence[str],
    form: Format,
    output: Path | None,
    zone: tzinfo,
    sheet: str,
) -> None:
    if output is None:
        _to_stdout(rows, columns, form)
        return
    try:
        exports.save(rows, columns, form, output, zone, sheet)
    except ExportError as error:
        raise fail(str(error)) from None


def _to_stdout(rows: list[dict[str, Any]], columns: Sequence[str], form: Format) -> None:
    """UTF-8 and CRLF as written, whatever the terminal's locale and newline conventions."""
    stream = io.TextIOWrapper(typer.get_binary_stream("stdout"), encoding="utf-8", newline="")
    try:
        exports.write(rows, columns, form, stream)
        stream.flush()
    finally:
        stream.detach()

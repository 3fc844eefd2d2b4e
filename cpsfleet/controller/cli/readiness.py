"""``cpsfleet controller roster``, ``readiness`` and ``forecast``: who can use their CPS card.

``register(app)`` adds the commands to the controller's Typer app. They parse, call
``controller.intake.roster`` / ``controller.rules.readiness`` / ``controller.rules.sightings``
and print; errors become one ``error: ...`` message on stderr and exit code 2. This module does not
import ``cpsfleet.controller.cli.app``, so that one can import it at the top without a cycle.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from tabulate import tabulate

from cpsfleet.clihelp import App
from cpsfleet.controller.cli.common import (
    AS_JSON,
    CONFIG,
    DATABASE,
    SEVERITY_OF_PROFESSIONALS,
    SITE_OF_CARDS,
    SITE_OF_PROFESSIONALS,
    audited,
    check_severity,
    database_path,
    emit,
    fail,
    open_store,
    settings_or_exit,
    severity_option,
    site_option,
)
from cpsfleet.controller.filters import Filters
from cpsfleet.controller.intake.roster import (
    Professional,
    RosterError,
    import_roster,
    load_professionals,
    read_roster,
)
from cpsfleet.controller.rules.readiness import REPORT_FIELDS, remembered
from cpsfleet.controller.rules.sightings import card_sightings, forecast, merge_sightings
from cpsfleet.controller.web import data as webdata
from cpsfleet.controller.web import exports
from cpsfleet.i18n import _, ngettext

# The professional's title and state as words (the JSON keeps the tokens beside them).
READINESS_COLUMNS = (
    *("surname", "given_name", "profession_title", "site", "state_label", "next_step", "detail"),
    "card_expires",
)
WRAP = {"next_step": 45, "detail": 45}


def register(app: typer.Typer) -> None:
    """Add ``roster import``, ``roster list``, ``readiness`` and ``forecast`` to ``app``."""
    roster = App(
        order=("import", "list"),
        help="The SSTI's doctors and nurses, imported from a CSV file.",
        no_args_is_help=True,
    )
    roster.command("import")(roster_import)
    roster.command("list")(roster_list)
    app.add_typer(roster, name="roster")
    app.command("readiness")(readiness)
    app.command("forecast")(expiry_forecast)


def roster_import(
    file: Path = typer.Argument(
        ..., metavar="FILE", help="The roster: CSV, UTF-8, with a header row."
    ),
    config: Path | None = CONFIG,
    database: Path | None = DATABASE,
) -> None:
    """Replace the roster with the professionals of a CSV file; a bad row imports nothing."""
    try:
        professionals = read_roster(file)
    except RosterError as error:
        problems = "".join(f"\n  {problem}" for problem in error.problems)
        raise fail(
            _("{file}: nothing imported:{problems}").format(file=file, problems=problems)
        ) from None
    with open_store(database_path(config, database), readonly=False) as store:
        result = import_roster(store.database, professionals, datetime.now(UTC))
        detail = {"imported": result.imported, "replaced": result.replaced}
        audited(store.database, "roster.import", file.name, detail)
    imported = ngettext(
        "imported {count} professional (the roster had {before})",
        "imported {count} professionals (the roster had {before})",
        result.imported,
    )
    typer.echo(imported.format(count=result.imported, before=result.replaced))


def roster_list(
    config: Path | None = CONFIG,
    database: Path | None = DATABASE,
    as_json: bool = AS_JSON,
) -> None:
    """The roster's professionals by site and name, with their idNat."""
    with open_store(database_path(config, database)) as store:
        rows = [_roster_row(professional) for professional in load_professionals(store.database)]
    emit(
        rows, as_json, _("the roster is empty: import it with `cpsfleet controller roster import`")
    )


def readiness(
    site: str | None = site_option(SITE_OF_PROFESSIONALS),
    severity: str | None = severity_option(SEVERITY_OF_PROFESSIONALS),
    config: Path | None = CONFIG,
    database: Path | None = DATABASE,
    as_json: bool = AS_JSON,
    as_csv: bool = typer.Option(False, "--csv", help="Print CSV instead of a table."),
) -> None:
    """Each professional's state and next step towards using their CPS card, by site and name."""
    if as_json and as_csv:
        raise fail(_("--json and --csv exclude each other: choose one"))
    check_severity(severity)
    settings = settings_or_exit(config)
    with open_store(database or Path(settings.database)) as store:
        now, key = datetime.now(UTC), settings.pseudonym_key
        rows = webdata.readiness(store, now, settings.thresholds, key, Filters(site, severity))
    if as_csv:
        buffer = io.StringIO()
        exports.write_csv(rows, REPORT_FIELDS, buffer, lineterminator="\n")
        typer.echo(buffer.getvalue(), nl=False)
        return
    empty = f"no professional at site {site!r}" if site else "the roster is empty"
    emit(rows, as_json, "no professional" if severity else empty, READINESS_COLUMNS, WRAP)


def expiry_forecast(
    site: str | None = site_option(SITE_OF_CARDS),
    config: Path | None = CONFIG,
    database: Path | None = DATABASE,
    as_json: bool = AS_JSON,
) -> None:
    """How many CPS cards expire in each of the next 12 months, per site (expired ones excluded)."""
    settings = settings_or_exit(config)
    now = datetime.now(UTC)
    with open_store(database or Path(settings.database)) as store:
        hosts = store.host_views()
        earlier = remembered(store.card_sightings(), now, settings.thresholds)
    cards = merge_sightings(card_sightings(hosts, now, settings.thresholds), earlier)
    rows = forecast([card for card in cards if Filters(site).site_matches(card.site)], now)
    if as_json:
        emit(rows, as_json=True, empty="")
    elif rows:
        typer.echo(tabulate(_by_site(rows), headers="keys"))
    else:
        typer.echo(
            _("no CPS card seen at site {site!r}").format(site=site)
            if site
            else _("no CPS card seen")
        )


# --- output -------------------------------------------------------------------------------


def _roster_row(professional: Professional) -> dict[str, Any]:
    fields = ("surname", "given_name", "profession", "id_nat", "rpps", "adeli", "site")
    flags = ("ecps_activated", "mobile_on_file", "email_on_file")
    return {name: getattr(professional, name) for name in (*fields, *flags)}


def _by_site(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The forecast's long rows as one line per site, one column per month."""
    table: dict[str | None, dict[str, Any]] = {}
    for row in rows:
        line = table.setdefault(row["site"], {"site": row["site"] or "(no site)"})
        line[row["month"]] = row["cards"]
    return list(table.values())

"""``cpsfleet sim``: virtual readers, simulated cards and their test certificates."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import typer

from cpsfleet.clihelp import App
from cpsfleet.i18n import _, decimal
from cpsfleet.schemas.broker import BrokerUrlError, parse_broker_url
from cpsfleet.signals import stop_on_signals
from cpsfleet.sim import vpcd
from cpsfleet.sim.cards import build_card
from cpsfleet.sim.examples import write_examples
from cpsfleet.sim.fleet import FleetError
from cpsfleet.sim.fleet.connection import Counts
from cpsfleet.sim.fleet.model import DEFAULT_SITES, generate_fleet
from cpsfleet.sim.fleet.player import play_fleet
from cpsfleet.sim.pki import Holder, PkiError, issue_card_certificates, load_or_create_ca
from cpsfleet.sim.profile import ProfileError, load_profile
from cpsfleet.sim.readers import DEFAULT_BASE_PORT, ReadersError, virtual_readers
from cpsfleet.sim.storm.play import play_storm
from cpsfleet.sim.storm.settings import DEFAULT_WILL_DELAY_S, StormSettings

# Set up (certificates, card profiles), then run (readers, a card, a fleet).
app = App(
    order=("certs", "examples", "readers", "card", "fleet"),
    help="Simulated PC/SC readers and CPS / Vitale cards for tests and demos.",
    no_args_is_help=True,
)


@app.command()
def readers(
    count: int = typer.Option(
        2, metavar="N", help="Number of virtual readers (vpcd gives them in pairs)."
    ),
    base_port: int = typer.Option(
        DEFAULT_BASE_PORT, metavar="PORT", help="TCP port of the first reader."
    ),
) -> None:
    """Start a pcscd of our own with vpcd readers; stay in the foreground until stopped."""
    stop = stop_on_signals()
    try:
        with virtual_readers(count, base_port) as (started, process):
            for reader in started:
                typer.echo(_("{reader}\tport {port}").format(reader=reader.name, port=reader.port))
            typer.echo(
                _("pcscd running (PID {pid}); Ctrl-C or SIGTERM stops it.").format(pid=process.pid)
            )
            while not stop.wait(0.5) and process.poll() is None:
                pass
            if process.poll() is not None:
                typer.echo(
                    _("pcscd exited unexpectedly with code {code}").format(code=process.returncode),
                    err=True,
                )
                raise typer.Exit(1)
    except ReadersError as error:
        typer.echo(_("error: {message}").format(message=error), err=True)
        raise typer.Exit(1) from None
    typer.echo(_("pcscd stopped."))


@app.command()
def card(
    profile: Path = typer.Argument(..., metavar="PROFILE", help="Card profile (TOML)."),
    port: int = typer.Option(vpcd.DEFAULT_PORT, help="TCP port of the vpcd reader."),
    host: str = typer.Option("127.0.0.1", help="Host running pcscd with vpcd."),
    log_apdus: bool = typer.Option(False, help="Log every APDU and response on stderr."),
) -> None:
    """Insert the card described by PROFILE into a reader until stopped (stopping removes it)."""
    try:
        simulated = build_card(load_profile(profile))
    except ProfileError as error:
        typer.echo(_("error: {message}").format(message=error), err=True)
        raise typer.Exit(2) from None
    logging.basicConfig(level=logging.DEBUG if log_apdus else logging.INFO, format="%(message)s")
    typer.echo(
        _("Playing {profile} on {host}:{port}; Ctrl-C removes the card.").format(
            profile=profile, host=host, port=port
        )
    )
    vpcd.play(simulated, host, port, stop_on_signals())


def _date(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@app.command()
def certs(
    out: Path = typer.Option(
        ..., metavar="DIR", help="Folder for the certificates and keys (PEM)."
    ),
    id_nat: str = typer.Option(
        ..., metavar="ID", help="National identifier, e.g. 810002813839 (8 + RPPS)."
    ),
    surname: str = typer.Option(..., metavar="NAME", help="The holder's surname."),
    given_name: str = typer.Option(..., metavar="NAME", help="The holder's given name."),
    profession: str = typer.Option(..., help="e.g. Médecin, Infirmier."),
    not_before: str = typer.Option(..., metavar="DATE", help="ISO date, e.g. 2025-01-01."),
    not_after: str = typer.Option(..., metavar="DATE", help="ISO date, e.g. 2028-01-01."),
    ca_dir: Path = typer.Option(
        None, metavar="DIR", help="Test CA folder (created on first use; default OUT/ca)."
    ),
) -> None:
    """Issue a holder's authentication and signature certificates from the test IGC-Santé CA."""
    try:
        holder = Holder(
            id_nat, surname, given_name, profession, _date(not_before), _date(not_after)
        )
        ca = load_or_create_ca(ca_dir or out / "ca")
        issued = issue_card_certificates(ca, holder, out)
    except (PkiError, ValueError) as error:
        typer.echo(_("error: {message}").format(message=error), err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{_('authentication')}\t{issued.authentication}")
    typer.echo(f"{_('signature')}\t{issued.signature}")


@app.command()
def examples(
    out: Path = typer.Argument(..., metavar="DIR", help="Folder to write the example cards to."),
) -> None:
    """Write example card profiles (CPS3, CPS4, expired CPS3, Vitale) with their certificates."""
    for profile in write_examples(out):
        typer.echo(str(profile))


def _progress(counts: Counts) -> None:
    progress = _("{published} published, {acknowledged} acknowledged").format(
        published=counts.published, acknowledged=counts.acknowledged
    )
    state = "" if counts.connected else _(" (disconnected: reconnecting)")
    typer.echo(progress + state, err=True)


@app.command()
def fleet(
    broker: str = typer.Option(
        "mqtt://127.0.0.1:1883", metavar="URL", help="A plain test broker (mqtt://)."
    ),
    agents: int = typer.Option(100, metavar="N", help="Number of synthetic workstations."),
    seed: int = typer.Option(
        1, metavar="N", help="Same seed, same fleet (hosts, cards, holders, faults)."
    ),
    sites: str = typer.Option(
        None,
        metavar="NAMES",
        help="Comma-separated site names (default: Lyon Part-Dieu, Villeurbanne, Grenoble, "
        "Saint-Étienne, Annecy).",
    ),
    interval: int = typer.Option(
        900, metavar="SECONDS", help="Seconds between two status documents of one host."
    ),
    once: bool = typer.Option(
        False, "--once", help="Publish each host's presence and status once, then exit."
    ),
    storm: bool = typer.Option(
        False, "--storm", help="A reconnect storm: every agent on its own connection, at once."
    ),
    workers: int = typer.Option(
        None, metavar="N", help="With --storm: worker processes (default: one per CPU core)."
    ),
    first_contact: bool = typer.Option(
        False,
        "--first-contact",
        help="With --storm: connect and lose every agent first, and wait for the offline Wills.",
    ),
    hold: float = typer.Option(
        0.0,
        metavar="SECONDS",
        help="With --storm: seconds connected afterwards (inf: until Ctrl-C).",
    ),
    will_delay: int = typer.Option(
        DEFAULT_WILL_DELAY_S,
        metavar="SECONDS",
        help="With --storm: the agents' Will Delay and session expiry (s).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as a JSON object."),
) -> None:
    """Play a synthetic fleet of workstations on a test broker: one MQTT connection for all,
    or with --storm one per agent, all coming back at once."""
    names = [name.strip() for name in sites.split(",") if name.strip()] if sites else DEFAULT_SITES
    stop = stop_on_signals()
    storm_only = workers is not None or first_contact or hold or will_delay != DEFAULT_WILL_DELAY_S
    try:
        if storm_only and not storm or storm and once:
            raise FleetError(
                _(
                    "--workers, --first-contact, --hold and --will-delay go with --storm, "
                    "which plays once, without --once"
                )
            )
        url = parse_broker_url(broker)
        hosts = generate_fleet(agents, seed, names)
        if storm:
            settings = StormSettings(workers, first_contact, hold, will_delay, interval)
            result = play_storm(url, hosts, None, lambda p: typer.echo(p, err=True), settings, stop)
            problem = result.problem
            summary = json.dumps(result.as_dict()) if as_json else str(result)
        else:
            run = play_fleet(url, hosts, interval, stop, _progress, once=once, seed=seed)
            problem, acknowledged = None, run.counts.acknowledged
            counts = {"hosts": run.hosts, "sites": run.sites, "acknowledged": acknowledged}
            summary = (
                json.dumps({**counts, "seconds": round(run.seconds, 3)})
                if as_json
                else _(
                    "{hosts} hosts on {sites} sites: {acknowledged} messages acknowledged by "
                    "{broker} in {seconds} s"
                ).format(
                    hosts=run.hosts,
                    sites=run.sites,
                    acknowledged=acknowledged,
                    broker=url,
                    seconds=decimal(run.seconds),
                )
            )
    except (FleetError, BrokerUrlError) as error:
        typer.echo(_("error: {message}").format(message=error), err=True)
        raise typer.Exit(2) from None
    typer.echo(summary)
    if problem:
        typer.echo(_("error: {message}").format(message=problem), err=True)
        raise typer.Exit(1)

"""``cpsfleet pki``: the fleet CA and its certificates, over ``cpsfleet.controller.pki.ca``."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path

import typer
from tabulate import tabulate

from cpsfleet.clihelp import App
from cpsfleet.controller.pki import ca as pki
from cpsfleet.controller.pki.ca import CONTROLLER_IDENTITY, IssuedFiles, PkiError
from cpsfleet.i18n import N_, _

EXIT_USAGE = 2
DIR_HELP = N_("The PKI directory: ca.pem, ca.key, agents/, controllers/, brokers/.")
DAYS_HELP = N_("Validity in days.")

# Set up (init, issue), look (list), act (renew).
app = App(
    order=("init", "issue", "list", "renew"),
    help=(
        "A small CA for the fleet's mutual TLS: create it, then issue, renew and list the "
        "agent, controller and broker certificates (keys 0600, certificates 0644)."
    ),
    no_args_is_help=True,
)


class Role(StrEnum):
    agent = "agent"
    controller = "controller"
    broker = "broker"


def fail(message: str) -> typer.Exit:
    typer.echo(_("error: {message}").format(message=message), err=True)
    return typer.Exit(EXIT_USAGE)


def report(files: IssuedFiles) -> None:
    _files(files.certificate, files.key)
    if files.previous_certificate and files.previous_key:
        previous = f"{files.previous_certificate}, {files.previous_key}"
        typer.echo(_("previous: {files}").format(files=previous))
    typer.echo(_("valid until {when}").format(when=f"{files.not_after:%Y-%m-%d %H:%M} UTC"))


def _files(certificate: Path, key: Path) -> None:
    typer.echo(_("certificate: {path}").format(path=certificate))
    typer.echo(_("key: {path}").format(path=key))


@app.command()
def init(
    directory: Path = typer.Option(..., "--dir", metavar="DIR", help=DIR_HELP),
    force: bool = typer.Option(
        False,
        "--force",
        help="Replace an existing CA (kept as ca.*.previous): every certificate it issued "
        "stops being accepted.",
    ),
    days: int = typer.Option(3650, "--days", help=DAYS_HELP),
) -> None:
    """Create the fleet CA: ca.pem (0644), to give to every client and the broker, and
    ca.key (0600), which stays on the machine that issues certificates."""
    try:
        files = pki.create_ca(directory, days=days, force=force)
    except PkiError as error:
        raise fail(str(error)) from None
    _files(files.certificate, files.key)


@app.command()
def issue(
    role: Role = typer.Argument(..., metavar="ROLE", help="agent, controller or broker."),
    name: str | None = typer.Argument(
        None,
        metavar="NAME",
        help="The agent's host id, the controller's identity (default cpsfleet-controller) or "
        "the broker's name: the certificate's CN.",
    ),
    directory: Path = typer.Option(..., "--dir", metavar="DIR", help=DIR_HELP),
    host: list[str] | None = typer.Option(
        None,
        "--host",
        help="A DNS name or IP address clients reach the broker by (repeat it; broker only).",
    ),
    days: int = typer.Option(825, "--days", help=DAYS_HELP),
) -> None:
    """Issue a key and certificate, NAME.pem and NAME.key in DIR/agents, DIR/controllers or
    DIR/brokers as ROLE says; an existing one is never overwritten (renew it)."""
    if name is None and role is not Role.controller:
        raise fail(f"NAME is required for {role.value} certificates")
    try:
        files = pki.issue(
            directory, pki.ROLE_NAMES[role.value], name or CONTROLLER_IDENTITY, days, host or []
        )
    except PkiError as error:
        raise fail(str(error)) from None
    report(files)


@app.command()
def renew(
    role: Role = typer.Argument(..., metavar="ROLE", help="agent, controller or broker."),
    name: str = typer.Argument(
        ..., metavar="NAME", help="The certificate's name (its file name without .pem)."
    ),
    directory: Path = typer.Option(..., "--dir", metavar="DIR", help=DIR_HELP),
    days: int = typer.Option(825, "--days", help=DAYS_HELP),
) -> None:
    """Replace a certificate by a new key and certificate with the same subject and names;
    the old pair is kept as NAME.pem.previous and NAME.key.previous. The broker reloads
    its own on SIGHUP; agents and the controller on their next connection."""
    try:
        files = pki.renew(directory, pki.ROLE_NAMES[role.value], name, days)
    except PkiError as error:
        raise fail(str(error)) from None
    report(files)


@app.command("list")
def list_(
    directory: Path = typer.Option(..., "--dir", metavar="DIR", help=DIR_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List the CA and every certificate it issued, with the days each has left."""
    try:
        rows = pki.list_certificates(directory)
    except PkiError as error:
        raise fail(str(error)) from None
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = [
        {
            "role": row["role"],
            "name": row["name"],
            "not after": row["not_after"][:10],
            "days left": row["days_left"],
            "hosts": " ".join(row["hosts"]),
            "file": row["path"],
        }
        for row in rows
    ]
    empty = _("no certificates in {directory}").format(directory=directory)
    typer.echo(tabulate(table, headers="keys") if table else empty)

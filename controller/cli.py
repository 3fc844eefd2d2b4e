"""``cpsfleet controller``: the fleet side."""

from __future__ import annotations

import json

import typer

from schemas import SchemaError, validate_status

app = typer.Typer(
    help="Receive, store and check the fleet's status documents.", no_args_is_help=True
)


@app.command()
def validate(
    documents: list[typer.FileText] = typer.Argument(..., help="Status documents (JSON) to check."),
) -> None:
    """Check status documents against the wire contract; exit 1 if any is invalid."""
    invalid = 0
    for document in documents:
        try:
            validate_status(json.load(document))
            typer.echo(f"{document.name}: valid")
        except (SchemaError, json.JSONDecodeError) as error:
            invalid += 1
            typer.echo(f"{document.name}: INVALID: {error}", err=True)
    raise typer.Exit(1 if invalid else 0)

"""The wire contract between the agent and the controller.

Each document carries its schema name and version; the JSON Schema files in
this package are the reference, and both sides validate against them.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

STATUS_SCHEMA = "cpsfleet.status"
STATUS_VERSION = 1
SCHEMA_FILES = {(STATUS_SCHEMA, STATUS_VERSION): "status.schema.json"}


class SchemaError(ValueError):
    """A document that does not follow the contract; the message names the first fault."""


@cache
def validator(name: str, version: int) -> Draft202012Validator:
    try:
        filename = SCHEMA_FILES[(name, version)]
    except KeyError:
        raise SchemaError(f"unknown schema {name!r} version {version!r}") from None
    schema = json.loads(resources.files(__package__).joinpath(filename).read_text("utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def validate(document: Any, name: str, version: int) -> None:
    if not isinstance(document, dict):
        raise SchemaError("a document must be a JSON object")
    error = best_match(validator(name, version).iter_errors(document))
    if error is not None:
        where = "/".join(str(part) for part in error.absolute_path) or "(document)"
        raise SchemaError(f"{where}: {error.message}")


def validate_status(document: Any) -> None:
    """Raise SchemaError unless ``document`` is a valid status document."""
    version = document.get("version") if isinstance(document, dict) else None
    validate(document, STATUS_SCHEMA, version if isinstance(version, int) else STATUS_VERSION)

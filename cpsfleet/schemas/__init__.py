"""The wire contract between the agent and the controller.

Each document carries its schema name and version; the JSON Schema files in
this package are the reference, and both sides validate against them. The MQTT
topic layout is in ``cpsfleet.schemas.topics``.
"""

from __future__ import annotations

import json
import reprlib
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:  # imported when first used: the agent validates only the commands it gets
    from jsonschema import Draft202012Validator

    from cpsfleet.schemas.subset import SubsetValidator

STATUS_SCHEMA = "cpsfleet.status"
EVENT_SCHEMA = "cpsfleet.event"
PRESENCE_SCHEMA = "cpsfleet.presence"
ALERT_SCHEMA = "cpsfleet.alert"
COMMAND_SCHEMA = "cpsfleet.command"
STATUS_VERSION = EVENT_VERSION = PRESENCE_VERSION = ALERT_VERSION = COMMAND_VERSION = 1
SCHEMA_FILES = {
    (STATUS_SCHEMA, 1): "status.schema.json",
    (EVENT_SCHEMA, 1): "event.schema.json",
    (PRESENCE_SCHEMA, 1): "presence.schema.json",
    (ALERT_SCHEMA, 1): "alert.schema.json",
    (COMMAND_SCHEMA, 1): "command.schema.json",
}


MAX_PAYLOAD_BYTES = 256 * 1024  # a status of 16 readers with 4 certificates each is ~60 KiB


class SchemaError(ValueError):
    """A document that does not follow the contract; the message names the first fault."""


@cache
def schema_of(name: str, version: int) -> dict[str, Any]:
    try:
        filename = SCHEMA_FILES[(name, version)]
    except KeyError:
        raise SchemaError(f"unknown schema {name!r} version {version!r}") from None
    # Checked against the metaschema by the tests, not here: that would load
    # python-jsonschema into every process that reads a document (the agent included).
    schema: dict[str, Any] = json.loads(
        resources.files(__package__).joinpath(filename).read_text("utf-8")
    )
    return schema


@cache
def validator(name: str, version: int) -> Draft202012Validator:
    """The reference validator (python-jsonschema): it words the errors."""
    from jsonschema import Draft202012Validator

    schema = schema_of(name, version)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


@cache
def fast_validator(name: str, version: int) -> Any:
    """The same schema compiled by jsonschema-rs: a valid status in microseconds, not
    milliseconds, which is what lets one controller take thousands of documents a second."""
    import jsonschema_rs

    return jsonschema_rs.validator_for(schema_of(name, version), validate_formats=True)


def validate(value: Any, name: str | None = None) -> dict[str, Any]:
    """Check a document against the schema it names (or must name); return it.

    The version is read from the document itself, so an unknown version is
    refused with its number rather than with a confusing field-by-field error.
    """
    document, declared, version = _declared(value, name)
    fast = fast_validator(declared, version)
    try:
        if fast.is_valid(document):
            return _beyond_schema(document, declared)
    except ValueError as unreadable:  # e.g. an integer beyond what jsonschema-rs represents
        raise SchemaError(f"not a document this controller accepts: {unreadable}") from None
    # Invalid: find the fault to report. The two validators agree on what is valid except
    # where regular expressions differ (Python's $ also matches before a final newline).
    from jsonschema.exceptions import best_match

    try:
        error = best_match(validator(declared, version).iter_errors(document))
    except RecursionError:
        raise SchemaError("nested too deeply") from None
    if error is not None:
        where = "/".join(str(part) for part in error.absolute_path) or "(document)"
        raise SchemaError(f"{where}: {error.message}")
    first = next(iter(fast.iter_errors(document)))
    where = "/".join(str(part) for part in first.instance_path) or "(document)"
    raise SchemaError(f"{where}: {first.message}")


def _beyond_schema(document: dict[str, Any], name: str) -> dict[str, Any]:
    """What the contract says and JSON Schema cannot: a status names each reader once (its
    readers are keyed by name on both sides, and PC/SC names are unique on a host)."""
    if name == STATUS_SCHEMA:
        names = [reader["name"] for reader in document["readers"]]
        if len(set(names)) != len(names):
            twice = next(name for name in names if names.count(name) > 1)
            raise SchemaError(f"readers: the reader {twice!r:.300} is named more than once")
    return document


def _declared(document: Any, name: str | None) -> tuple[dict[str, Any], str, int]:
    """(the document, its schema, its version), if it is an object declaring ``name``."""
    if not isinstance(document, dict):
        raise SchemaError("a document must be a JSON object")
    declared = document.get("schema")
    if name is not None and declared != name:
        raise SchemaError(f"schema: expected {name!r}, got {_shown(declared)}")
    version = document.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise SchemaError(f"version must be a whole number, not {_shown(version)}")
    return document, str(declared), version


def _shown(value: Any) -> str:
    """A short repr of any JSON value: reprlib stops at a few levels and items, where repr
    would walk arrays nested a thousand deep and exceed the recursion limit."""
    return reprlib.repr(value)[:60]


@cache
def subset_validator(name: str, version: int) -> SubsetValidator:
    from cpsfleet.schemas.subset import SubsetValidator

    return SubsetValidator(schema_of(name, version))


def validate_flat(value: Any, name: str) -> dict[str, Any]:
    """``validate`` for a flat document (``cpsfleet.schemas.subset``): the same decision,
    made without a JSON Schema library, for the agent, whose memory counts."""
    document, declared, version = _declared(value, name)
    fault = subset_validator(declared, version).first_fault(document)
    if fault is not None:
        raise SchemaError(f"{'/'.join(fault.path) or '(document)'}: {fault.message}")
    return document


def validate_status(document: Any) -> dict[str, Any]:
    """Raise SchemaError unless ``document`` is a valid status document."""
    return validate(document, STATUS_SCHEMA)


def parse(payload: bytes, name: str) -> dict[str, Any]:
    """Decode an MQTT payload and validate it as a ``name`` document.

    Payloads over ``MAX_PAYLOAD_BYTES`` are refused before they are parsed.
    """
    return validate(decode(payload), name)


def parse_flat(payload: bytes, name: str) -> dict[str, Any]:
    """``parse`` for a flat document, with ``validate_flat``."""
    return validate_flat(decode(payload), name)


def decode(payload: bytes) -> Any:
    """The JSON value of an MQTT payload, or SchemaError."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise SchemaError(f"payload of {len(payload)} bytes is over the {MAX_PAYLOAD_BYTES} limit")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as error:
        raise SchemaError(f"not UTF-8: {error}") from None
    try:
        # orjson: a status parses in a fifth of the time json takes, which counts at
        # thousands a second. It is stricter: NaN, integers beyond 64 bits, lone surrogates
        # and nesting over 1024 levels are not JSON a controller accepts either.
        document = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        if str(error).startswith("depth limit"):
            raise SchemaError("not JSON this controller accepts: nested too deeply") from None
        if "infinity" in str(error):  # a number too large for a double
            raise SchemaError(f"not JSON this controller accepts: {error}") from None
        raise SchemaError(f"not JSON: {error}") from None
    return document

"""A validator for the small part of JSON Schema 2020-12 that flat documents use.

The agent validates one kind of document, the controller's commands, and its memory is
counted (under 40 MB on a workstation): jsonschema-rs would add 8 MB to it and
python-jsonschema 4 MB, for the rest of its life, from the first command. A command's
schema is one flat object of strings and constants, and this module validates it against
that very schema file, with the few keywords such a schema needs:

    type, const, enum, pattern, maxLength,       on a value
    format (date-time only)
    properties, required, additionalProperties,  on the object
    dependentRequired
    $schema, $id, title, description             annotations, ignored

A schema with any other keyword is refused when the validator is made, so that a schema
growing beyond this subset fails loudly (in the tests) instead of being checked in part.
``tests/test_schemas.py`` checks that it decides as the reference validator does.

Two details follow JSON Schema rather than Python: ``true`` is not the number 1 (``const``,
``enum``), and a pattern's final ``$`` does not match before a final newline as Python's
does.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

ANNOTATIONS = frozenset({"$schema", "$id", "title", "description"})
VALUE_KEYWORDS = frozenset({"type", "const", "enum", "pattern", "maxLength", "format"})
OBJECT_KEYWORDS = frozenset({"properties", "required", "additionalProperties", "dependentRequired"})
TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda value: isinstance(value, str),
    "object": lambda value: isinstance(value, dict),
}


class SubsetError(ValueError):
    """The schema uses JSON Schema beyond this module's subset."""


@dataclass(frozen=True)
class Fault:
    """Where in the document (a JSON pointer's parts) and what is wrong."""

    path: tuple[str, ...]
    message: str


class SubsetValidator:
    """Validates documents against one schema of the subset."""

    def __init__(self, schema: dict[str, Any]) -> None:
        _check_keywords(schema, VALUE_KEYWORDS | OBJECT_KEYWORDS, "the schema")
        if schema.get("additionalProperties", False) is not False:
            raise SubsetError("additionalProperties must be false in this subset")
        self.schema = schema
        self.properties: dict[str, dict[str, Any]] = schema.get("properties", {})
        for name, rules in self.properties.items():
            _check_keywords(rules, VALUE_KEYWORDS, f"property {name!r}")
        self.patterns = {
            name: _pattern(rules["pattern"])
            for name, rules in self.properties.items()
            if "pattern" in rules
        }

    def first_fault(self, document: Any) -> Fault | None:
        """The first thing wrong with ``document``, or None if it is valid."""
        top = _value_fault((), document, self.schema, None)
        if top is not None or not isinstance(document, dict):
            return top
        for name in self.schema.get("required", []):
            if name not in document:
                return Fault((), f"{name!r} is a required property")
        for name, needs in self.schema.get("dependentRequired", {}).items():
            missing = [need for need in needs if name in document and need not in document]
            if missing:
                return Fault((), f"{missing[0]!r} is a dependency of {name!r}")
        for name, value in document.items():
            if name not in self.properties:
                if "additionalProperties" in self.schema:
                    return Fault((), f"additional property {name!r} is not allowed")
                continue
            fault = _value_fault((name,), value, self.properties[name], self.patterns.get(name))
            if fault is not None:
                return fault
        return None


def _check_keywords(schema: dict[str, Any], allowed: frozenset[str], where: str) -> None:
    unknown = set(schema) - allowed - ANNOTATIONS
    if unknown:
        raise SubsetError(f"{where} uses {sorted(unknown)}, beyond this validator's subset")
    kind = schema.get("type")
    if kind is not None and kind not in TYPES:
        raise SubsetError(f"{where} has type {kind!r}, beyond this validator's subset")
    form = schema.get("format")
    if form is not None and form not in FORMATS:
        raise SubsetError(f"{where} has format {form!r}, beyond this validator's subset")


def _value_fault(
    path: tuple[str, ...], value: Any, rules: dict[str, Any], pattern: re.Pattern[str] | None
) -> Fault | None:
    kind = rules.get("type")
    if kind is not None and not TYPES[kind](value):
        return Fault(path, f"{_shown(value)} is not of type {kind!r}")
    if "const" in rules and not _equal(value, rules["const"]):
        return Fault(path, f"{_shown(rules['const'])} was expected")
    if "enum" in rules and not any(_equal(value, option) for option in rules["enum"]):
        return Fault(path, f"{_shown(value)} is not one of {rules['enum']!r}")
    if not isinstance(value, str):
        return None  # pattern and maxLength apply to strings only
    if "maxLength" in rules and len(value) > rules["maxLength"]:
        return Fault(path, f"{_shown(value)} is longer than {rules['maxLength']} characters")
    if pattern is not None and not pattern.search(value):
        return Fault(path, f"{_shown(value)} does not match {rules['pattern']!r}")
    if "format" in rules and not FORMATS[rules["format"]](value):
        return Fault(path, f"{_shown(value)} is not a {rules['format']!r}")
    return None


# RFC 3339's date-time, as python-jsonschema checks it (with rfc3339-validator): the
# pattern, then a real calendar day of a year other than 0000.
_DATE_TIME = re.compile(
    r"([0-9]{4})-(0[1-9]|1[0-2])-([0-9]{2})T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    r"(\.[0-9]+)?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])",
    re.ASCII,
)


def _is_date_time(value: str) -> bool:
    match = _DATE_TIME.fullmatch(value)
    if match is None:
        return False
    year, month, day = int(match[1]), int(match[2]), int(match[3])
    return year > 0 and 1 <= day <= calendar.monthrange(year, month)[1]


FORMATS: dict[str, Callable[[str], bool]] = {"date-time": _is_date_time}


def _pattern(text: str) -> re.Pattern[str]:
    """A final ``$`` matches at the very end only, as in the ECMA-262 patterns of JSON Schema."""
    if text.endswith("$") and not text.endswith("\\$"):
        text = text[:-1] + r"\Z"
    return re.compile(text)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _equal(value: Any, expected: Any) -> bool:
    """JSON equality: 1 == 1.0, but true is not 1."""
    if _is_number(value) and _is_number(expected):
        return bool(value == expected)
    return type(value) is type(expected) and bool(value == expected)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."

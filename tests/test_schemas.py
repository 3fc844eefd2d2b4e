"""The wire contract: example documents validate, faulty ones are rejected with a reason."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from cpsfleet.schemas import (
    COMMAND_SCHEMA,
    SCHEMA_FILES,
    STATUS_SCHEMA,
    SchemaError,
    fast_validator,
    schema_of,
    validate,
    validate_flat,
    validate_status,
    validator,
)
from cpsfleet.schemas.subset import SubsetError, SubsetValidator

EXAMPLES = sorted(
    (Path(__file__).parent.parent / "cpsfleet" / "schemas" / "examples").glob("*.json")
)


def example(name: str) -> dict:
    return json.loads(next(p for p in EXAMPLES if p.stem == name).read_text("utf-8"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_documents_are_valid(path: Path) -> None:
    document = json.loads(path.read_text("utf-8"))
    assert (document["schema"], document["version"]) in SCHEMA_FILES
    validate(document)


def test_there_is_an_example_of_each_document() -> None:
    kinds = {json.loads(p.read_text("utf-8"))["schema"] for p in EXAMPLES}
    assert kinds == {name for name, _ in SCHEMA_FILES}
    assert {p.stem for p in EXAMPLES} >= {"status-four-readers", "status-pcscd-down"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("host"), "'host' is a required property"),
        (lambda d: d.update(version=99), "unknown schema 'cpsfleet.status' version 99"),
        (lambda d: d["readers"][0].update(state="sleeping"), "readers/0/state"),
        (lambda d: d["readers"][0]["card"].update(atr="3b ac"), "readers/0/card/atr"),
        (lambda d: d["readers"][0]["card"]["certificates"][0].update(sha256="xyz"), "sha256"),
        (lambda d: d.update(extra=1), "Additional properties are not allowed ('extra'"),
        (lambda d: d.update(scanned_at="yesterday"), "scanned_at"),
    ],
)
def test_faulty_documents_are_rejected_with_the_place_of_the_fault(change, message) -> None:
    document = copy.deepcopy(example("status-four-readers"))
    change(document)
    with pytest.raises(SchemaError, match=None) as raised:
        validate_status(document)
    assert message in str(raised.value)


def test_a_non_object_is_rejected() -> None:
    with pytest.raises(SchemaError, match="must be a JSON object"):
        validate_status([1, 2])


def test_controller_validate_command_reports_each_file(tmp_path: Path) -> None:
    from tests.conftest import run_cli

    bad = tmp_path / "bad.json"
    bad.write_text('{"schema": "cpsfleet.status", "version": 1}')
    result = run_cli("controller", "validate", str(EXAMPLES[0]), str(bad))
    assert result.returncode == 1
    assert f"{EXAMPLES[0]}: valid" in result.stdout
    assert f"{bad}: INVALID: (document): 'host' is a required property" in result.stderr


def test_a_document_of_another_kind_is_refused_where_a_status_is_expected() -> None:
    with pytest.raises(SchemaError, match="schema: expected 'cpsfleet.status'"):
        validate_status(example("presence-last-will"))


@pytest.mark.parametrize(
    ("name", "change", "message"),
    [
        ("event-card-inserted", lambda d: d.update(type="card_eaten"), "type"),
        ("event-card-inserted", lambda d: d.update(host_id="a/b"), "host_id"),
        ("presence-last-will", lambda d: d.update(state="asleep"), "state"),
        ("presence-last-will", lambda d: d.pop("reason"), "'reason' is a required property"),
    ],
)
def test_faulty_events_and_presences_are_rejected(name, change, message) -> None:
    document = copy.deepcopy(example(name))
    change(document)
    with pytest.raises(SchemaError) as raised:
        validate(document)
    assert message in str(raised.value)


COMMAND_ID = "5b0e7c1f2a9d4e6b8c3a1f0e9d8c7b6a"


def test_a_status_answering_a_command_names_it_and_older_statuses_stay_valid() -> None:
    answer = example("status-answering-rescan")
    assert answer["answers"] == [example("command-rescan")["id"]]
    periodic = example("status-four-readers")
    assert "answers" not in periodic
    validate_status(periodic)
    validate_status({**periodic, "answers": None})
    validate_status({**periodic, "answers": [COMMAND_ID, "0" * 32]})


@pytest.mark.parametrize(
    ("answers", "message"),
    [
        (COMMAND_ID, "is not of type 'array', 'null'"),
        ([], "should be non-empty"),
        (["5B0E7C1F2A9D4E6B8C3A1F0E9D8C7B6A"], "does not match"),
        ([COMMAND_ID, COMMAND_ID], "has non-unique elements"),
        ([f"{n:032x}" for n in range(65)], "is too long"),
    ],
)
def test_faulty_answers_are_rejected(answers, message) -> None:
    with pytest.raises(SchemaError) as raised:
        validate_status({**example("status-four-readers"), "answers": answers})
    assert "answers" in str(raised.value) and message in str(raised.value)


def test_a_command_is_valid_unsigned_and_signed_not_half_signed(tmp_path: Path) -> None:
    from cpsfleet.controller.pki import ca as pki
    from cpsfleet.schemas.commands import COMMANDS_IDENTITY
    from cpsfleet.schemas.signing import Signer

    pki.create_ca(tmp_path)
    issued = pki.issue(tmp_path, "controller", COMMANDS_IDENTITY)
    unsigned = example("command-rescan")
    signed = Signer.from_files(issued.certificate, issued.key).sign(unsigned)
    assert validate(unsigned) == unsigned and validate(signed) == signed
    for half in ("signer", "signature"):
        with pytest.raises(SchemaError, match="is a dependency of"):
            validate({key: value for key, value in signed.items() if key != half})


@pytest.mark.parametrize("key", sorted(SCHEMA_FILES), ids=lambda key: key[0])
def test_each_schema_follows_the_json_schema_metaschema(key: tuple[str, int]) -> None:
    Draft202012Validator.check_schema(schema_of(*key))


def test_a_schema_beyond_the_subset_is_refused_when_the_validator_is_made() -> None:
    with pytest.raises(SubsetError, match="beyond this validator's subset"):
        SubsetValidator(schema_of(STATUS_SCHEMA, 1))
    with pytest.raises(SubsetError, match=r"\['minLength'\]"):
        SubsetValidator({"type": "object", "properties": {"id": {"minLength": 1}}})


# Values a command's members may take instead of their own: other types, JSON's true/1
# confusion, strings just outside the patterns (a final newline, one character too many).
ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-2, max_value=2),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["", "rescan", "cpsfleet.command", "0" * 32, "0" * 32 + "\n", "A" * 201]),
    st.sampled_from(["2026-11-28T09:00:00Z\n", "ws-a\n", "ws a", "AAAA==", "AAAA===", "é"]),
    st.text(max_size=40),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
MEMBERS = st.sampled_from(
    ["schema", "version", "id", "host_id", "action", "issued_at", "expires_at", "issued_by"]
    + ["signer", "signature", "extra"]
)


@settings(max_examples=400, deadline=None, database=None)
@given(
    changes=st.dictionaries(MEMBERS, ODD_VALUES, max_size=3),
    removed=st.sets(MEMBERS, max_size=2),
    signed=st.booleans(),
)
def test_the_subset_validator_decides_commands_as_the_reference(
    changes: dict[str, object], removed: set[str], signed: bool
) -> None:
    document = example("command-rescan")
    if signed:
        document |= {"signer": "QUJD", "signature": "REVG"}
    document |= changes
    for name in removed:
        document.pop(name, None)
    try:
        validate(copy.deepcopy(document), COMMAND_SCHEMA)
    except SchemaError as reference:
        with pytest.raises(SchemaError) as subset:
            validate_flat(document, COMMAND_SCHEMA)
        # Either the checks both share (schema, version) said it, or the fault the subset
        # names is one of the reference's (which names one of several). The reference is
        # both validators: python-jsonschema's $ matches before a final newline, and only
        # jsonschema-rs then sees the fault.
        faults = {
            "/".join(map(str, error.absolute_path)) or "(document)"
            for error in validator(COMMAND_SCHEMA, 1).iter_errors(document)
        } | {
            "/".join(map(str, error.instance_path)) or "(document)"
            for error in fast_validator(COMMAND_SCHEMA, 1).iter_errors(document)
        }
        where = str(subset.value).partition(":")[0]
        assert str(subset.value) == str(reference) or where in faults, (where, faults)
    else:
        assert validate_flat(document, COMMAND_SCHEMA) == document

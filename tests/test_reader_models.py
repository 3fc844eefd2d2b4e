"""Readers' models: the agent's USB ids, names and CCID version from a recorded sysfs layout,
and the optional ``model`` of the status contract."""

from __future__ import annotations

import json
import plistlib
from pathlib import Path
from typing import Any

import pytest

from cpsfleet.agent.usb import ccid_version, match, reader_models, usb_readers
from cpsfleet.schemas import SchemaError, validate_status
from cpsfleet.schemas.documents import ReaderModel

EXAMPLES = Path(__file__).parent.parent / "cpsfleet" / "schemas" / "examples"
GEMALTO = "Gemalto PC Twin Reader (645D0B2F) 00 00"
OMNIKEY = "HID Global OMNIKEY 3x21 Smart Card Reader [OMNIKEY 3x21 Smart Card Reader] 00 00"


def device(root: Path, port: str, ids: tuple[str, str], names: dict[str, str], cls: str) -> None:
    """One USB device as sysfs lays it out: its attributes, and interface 0 with its class."""
    path = root / "sys/bus/usb/devices" / port
    (path / f"{port}:1.0").mkdir(parents=True)
    (path / f"{port}:1.0" / "bInterfaceClass").write_text(f"{cls}\n")
    (path / "idVendor").write_text(f"{ids[0]}\n")
    (path / "idProduct").write_text(f"{ids[1]}\n")
    for name, value in names.items():
        (path / name).write_text(f"{value}\n")


def ccid_bundle(root: Path, version: str, where: str = "usr/lib/pcsc/drivers") -> None:
    contents = root / where / "ifd-ccid.bundle" / "Contents"
    contents.mkdir(parents=True)
    info = {"CFBundleShortVersionString": version, "CFBundleExecutable": "libccid.so"}
    (contents / "Info.plist").write_bytes(plistlib.dumps(info))


@pytest.fixture
def workstation(tmp_path: Path) -> Path:
    """Two readers (a Gemalto and an OMNIKEY), a keyboard, and CCID 1.5.2."""
    device(
        tmp_path,
        "1-1",
        ("08e6", "3437"),
        {"manufacturer": "Gemalto", "product": "PC Twin Reader"},
        "0b",
    )
    device(
        tmp_path,
        "1-2",
        ("076b", "3031"),
        {"manufacturer": "HID Global", "product": "OMNIKEY 3x21 Smart Card Reader"},
        "0b",
    )
    device(tmp_path, "2-1", ("046d", "c31c"), {"product": "USB Keyboard"}, "03")
    (tmp_path / "sys/bus/usb/devices/usb1").mkdir()  # a root hub: no interface of ours
    ccid_bundle(tmp_path, "1.5.2")
    return tmp_path


def test_only_smart_card_devices_are_readers(workstation: Path) -> None:
    assert [model.usb_product_id for model in usb_readers(workstation)] == ["3437", "3031"]


def test_each_reader_gets_its_usb_ids_names_and_the_ccid_version(workstation: Path) -> None:
    models = reader_models([GEMALTO, OMNIKEY, "Virtual PCD 00 00"], workstation)
    assert models[GEMALTO] == ReaderModel("08e6", "3437", "Gemalto", "PC Twin Reader", "1.5.2")
    assert (models[OMNIKEY].usb_vendor_id, models[OMNIKEY].product) == (
        "076b",
        "OMNIKEY 3x21 Smart Card Reader",
    )
    assert "Virtual PCD 00 00" not in models  # vpcd: no USB device, no model


def test_without_sysfs_no_reader_has_a_model(tmp_path: Path) -> None:
    assert reader_models([GEMALTO], tmp_path) == {}


def test_two_models_a_name_cannot_tell_apart_give_none() -> None:
    twins = [
        ReaderModel("08e6", "3437", "Gemalto", "PC Twin Reader"),
        ReaderModel("08e6", "3438", "Gemalto", "PC Twin Reader"),
    ]
    assert match(GEMALTO, twins) is None


def test_a_name_that_only_shares_a_prefix_is_no_match() -> None:
    model = ReaderModel("08e6", "3437", "Gemalto", "PC Twin")
    assert match("Gemalto PC Twinkle 00 00", [model]) is None


@pytest.mark.parametrize("where", ["usr/lib/pcsc/drivers", "usr/lib64/pcsc/drivers"])
def test_the_ccid_version_is_read_where_distributions_put_it(tmp_path: Path, where: str) -> None:
    ccid_bundle(tmp_path, "1.6.1", where)
    assert ccid_version(tmp_path) == "1.6.1"


def test_a_broken_info_plist_gives_no_version(tmp_path: Path) -> None:
    contents = tmp_path / "usr/lib/pcsc/drivers/ifd-ccid.bundle/Contents"
    contents.mkdir(parents=True)
    (contents / "Info.plist").write_bytes(b"<plist><dict><key>")
    assert ccid_version(tmp_path) is None


# --- the contract -------------------------------------------------------------------------


def status() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(
        (EXAMPLES / "status-four-readers.json").read_text("utf-8")
    )
    return document


def test_a_status_without_models_stays_valid() -> None:
    document = status()
    assert all("model" not in reader for reader in document["readers"])
    validate_status(document)


@pytest.mark.parametrize(
    "model",
    [
        None,
        {},
        {"usb_vendor_id": None, "usb_product_id": None, "driver_version": None},
        {
            "usb_vendor_id": "08e6",
            "usb_product_id": "3437",
            "manufacturer": "Gemalto",
            "product": "P" * 256,
            "driver_version": "1" * 64,
        },
    ],
)
def test_a_reader_model_is_optional_and_each_field_nullable(model: Any) -> None:
    document = status()
    document["readers"][0]["model"] = model
    validate_status(document)


@pytest.mark.parametrize(
    "model",
    [
        {"usb_vendor_id": "08E6"},  # sysfs writes lower case
        {"usb_vendor_id": "8e6"},
        {"product": "P" * 257},
        {"driver_version": "1" * 65},
        {"serial": "645D0B2F"},
        "Gemalto",
    ],
)
def test_a_malformed_reader_model_is_refused(model: Any) -> None:
    document = status()
    document["readers"][0]["model"] = model
    with pytest.raises(SchemaError):
        validate_status(document)

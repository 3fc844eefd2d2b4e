"""Which model each reader is: its USB ids and product name, and the PC/SC driver's version.

Linux only, from files, never from the device itself: sysfs describes every USB device
(``/sys/bus/usb/devices/<port>/idVendor``, ``idProduct``, ``manufacturer``, ``product``, and
each interface's ``bInterfaceClass``, ``0b`` for a smart-card reader, CCID), and the CCID
driver's bundle says its version (``CFBundleShortVersionString`` of its ``Info.plist``).
pcscd names a CCID reader "<manufacturer> <product> [(<serial>)] <n> <m>", so a reader is
matched to the USB smart-card device whose names begin its own. A reader nothing matches (a
virtual vpcd reader, another system, a device whose names sysfs lacks) has no model: every
field is optional on the wire, and a guess would be worse than nothing.
"""

from __future__ import annotations

import plistlib
import re
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from xml.parsers.expat import ExpatError

from cpsfleet.schemas.documents import ReaderModel

USB_DEVICES = Path("sys/bus/usb/devices")
SMART_CARD_CLASS = "0b"
# Where distributions install the CCID driver bundle (Debian and Ubuntu; Fedora, RHEL, SUSE).
CCID_BUNDLES = (
    Path("usr/lib/pcsc/drivers/ifd-ccid.bundle"),
    Path("usr/lib64/pcsc/drivers/ifd-ccid.bundle"),
    Path("usr/local/lib/pcsc/drivers/ifd-ccid.bundle"),
)
# pcscd's suffix: the slot's two numbers, after an optional serial in parentheses.
_SLOT = re.compile(r"(\s*\([^)]*\))?\s+[0-9]{2}\s+[0-9]{2}$")


def _text(path: Path) -> str | None:
    try:
        value = path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None
    return value or None


def _is_smart_card_reader(device: Path) -> bool:
    interfaces = device.glob(f"{device.name}:*/bInterfaceClass")
    return any(_text(interface) == SMART_CARD_CLASS for interface in interfaces)


def usb_readers(root: Path = Path("/")) -> list[ReaderModel]:
    """The USB smart-card readers sysfs describes under ``root``, by port."""
    base = root / USB_DEVICES
    devices = sorted(base.iterdir()) if base.is_dir() else []
    return [
        ReaderModel(
            usb_vendor_id=_text(device / "idVendor"),
            usb_product_id=_text(device / "idProduct"),
            manufacturer=_text(device / "manufacturer"),
            product=_text(device / "product"),
        )
        for device in devices
        if ":" not in device.name and _is_smart_card_reader(device)
    ]


def ccid_version(root: Path = Path("/")) -> str | None:
    """The CCID driver's version, from the first bundle found; None without one."""
    for bundle in CCID_BUNDLES:
        try:
            with (root / bundle / "Contents" / "Info.plist").open("rb") as stream:
                version = plistlib.load(stream).get("CFBundleShortVersionString")
        except (OSError, plistlib.InvalidFileException, ExpatError, ValueError, AttributeError):
            continue
        if isinstance(version, str) and version.strip():
            return version.strip()[:64]
    return None


def _names(model: ReaderModel) -> list[str]:
    both = " ".join(filter(None, (model.manufacturer, model.product)))
    return [name for name in (both, model.product) if name]


def match(reader: str, models: Iterable[ReaderModel]) -> ReaderModel | None:
    """The model whose names begin the reader's name (longest first); None if none, or if
    two different models would (two readers of one name cannot be told apart)."""
    base = _SLOT.sub("", reader).casefold()
    found = {
        (len(name), model)
        for model in models
        for name in _names(model)
        if base == name.casefold() or base.startswith(name.casefold() + " ")
    }
    if not found:
        return None
    longest = max(length for length, _model in found)
    candidates = {model for length, model in found if length == longest}
    return candidates.pop() if len(candidates) == 1 else None


def reader_models(readers: Iterable[str], root: Path = Path("/")) -> dict[str, ReaderModel]:
    """The model of each reader that one matches, with the CCID driver's version."""
    models = usb_readers(root)
    if not models:
        return {}
    driver = ccid_version(root)
    found = {name: match(name, models) for name in readers}
    return {
        name: replace(model, driver_version=driver)
        for name, model in found.items()
        if model is not None
    }

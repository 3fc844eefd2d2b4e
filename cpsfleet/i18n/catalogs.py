"""Keeping the message catalogs in step with the code (for maintainers; needs Babel, a
development dependency):

    .venv/bin/python -m cpsfleet.i18n.catalogs

extracts the messages marked in the code (``babel.cfg`` says where) into
``locales/cpsfleet.pot`` and merges them into each language's ``.po``: new messages appear
untranslated, those gone from the code are dropped, and compiles them (as the build does,
setup.py). Translate the empty ``msgstr`` and run it again; ``tests/test_i18n.py`` fails
while a message has no translation or a translation has no message.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from cpsfleet.i18n import DOMAIN, LANGUAGES, LOCALES

if TYPE_CHECKING:
    from babel.messages.catalog import Catalog

ROOT = Path(__file__).resolve().parents[2]
MAPPING = ROOT / "babel.cfg"
TEMPLATE = LOCALES / f"{DOMAIN}.pot"
KEYWORDS = {"_": None, "N_": None, "ngettext": (1, 2)}


def po_path(language: str) -> Path:
    return LOCALES / language / "LC_MESSAGES" / f"{DOMAIN}.po"


def extract() -> Catalog:
    """The messages marked in the code now, as a template catalog."""
    from babel.messages.catalog import Catalog
    from babel.messages.extract import extract_from_dir
    from babel.messages.frontend import parse_mapping_cfg

    with MAPPING.open(encoding="utf-8") as stream:
        method_map, options_map = parse_mapping_cfg(stream)  # type: ignore[no-untyped-call]
    catalog = Catalog(project="cpsfleet", charset="utf-8")
    found = extract_from_dir(
        str(ROOT), method_map, options_map, keywords=KEYWORDS, comment_tags=("TRANSLATORS:",)
    )
    for filename, line, message, comments, context in found:
        catalog.add(message, None, [(filename, line)], auto_comments=comments, context=context)
    return catalog


def read(language: str) -> Catalog:
    from babel.messages.pofile import read_po

    with po_path(language).open("rb") as stream:
        return read_po(stream, locale=language)


def update() -> None:
    """Write the template and merge it into each translated language's catalog."""
    from babel.messages.catalog import Catalog
    from babel.messages.pofile import write_po

    template = extract()
    with TEMPLATE.open("wb") as stream:
        write_po(stream, template, width=100, omit_header=False)
    for language in LANGUAGES:
        if language == "en":
            continue  # the code's own words
        path = po_path(language)
        catalog = read(language) if path.exists() else Catalog(locale=language, domain=DOMAIN)
        catalog.update(template, no_fuzzy_matching=True)
        catalog.obsolete.clear()
        catalog.fuzzy = False  # the header: msgfmt and Babel leave a fuzzy one out
        catalog.project, catalog.version = "cpsfleet", ""
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as stream:
            write_po(stream, catalog, width=100, include_previous=False)
        compile_catalog(catalog, path)
        messages = [message for message in catalog if message.id]
        missing = sum(1 for message in messages if not message.string)
        print(f"{path.relative_to(ROOT)}: {len(messages)} messages, {missing} to translate")


def compile_catalog(catalog: Catalog, po: Path) -> None:
    """The ``.mo`` beside ``po``, as the build writes it (setup.py)."""
    from babel.messages.mofile import write_mo

    with po.with_suffix(".mo").open("wb") as stream:
        write_mo(stream, catalog)


if __name__ == "__main__":
    update()
    sys.exit(0)

"""Keeping the message catalogs in step with the code (for maintainers; needs Babel, a
development dependency):

    .venv/bin/python -m cpsfleet.i18n.catalogs [DOMAIN...]

extracts the messages marked in the code (``babel.cfg``, ``babel-DOMAIN.cfg`` say where), and
the commands' help (``cpsfleet.i18n.helptext``) into
``locales/DOMAIN.pot`` and merges them into each language's ``DOMAIN.po``: new messages appear
untranslated, those gone from the code are dropped, and compiles them (as the build does,
setup.py). Translate the empty ``msgstr`` and run it again; ``tests/test_i18n.py`` fails
while a message has no translation or a translation has no message.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from cpsfleet.i18n import DOMAIN, DOMAINS, LANGUAGES, LOCALES, helptext

if TYPE_CHECKING:
    from babel.messages.catalog import Catalog

ROOT = Path(__file__).resolve().parents[2]
KEYWORDS = {"_": None, "N_": None, "ngettext": (1, 2)}
# The catalog that also holds the commands' help (cpsfleet.i18n.helptext finds it).
HELP_DOMAIN = DOMAIN


def mapping(domain: str) -> Path:
    """Babel's mapping of the files whose messages are ``domain``'s."""
    return ROOT / ("babel.cfg" if domain == DOMAIN else f"babel-{domain}.cfg")


def po_path(language: str, domain: str = DOMAIN) -> Path:
    return LOCALES / language / "LC_MESSAGES" / f"{domain}.po"


def extract(domain: str = DOMAIN) -> Catalog:
    """The messages of ``domain`` marked in the code now, as a template catalog."""
    from babel.messages.catalog import Catalog
    from babel.messages.extract import extract_from_dir

    try:
        from babel.messages.frontend import parse_mapping_cfg
    except ImportError:  # its name before Babel 2.14
        from babel.messages.frontend import parse_mapping as parse_mapping_cfg

    with mapping(domain).open(encoding="utf-8") as stream:
        method_map, options_map = parse_mapping_cfg(stream)  # type: ignore[no-untyped-call]
    catalog = Catalog(project="cpsfleet", charset="utf-8")
    found = extract_from_dir(
        str(ROOT), method_map, options_map, keywords=KEYWORDS, comment_tags=("TRANSLATORS:",)
    )
    for filename, line, message, comments, context in found:
        catalog.add(message, None, [(filename, line)], auto_comments=comments, context=context)
    if domain == HELP_DOMAIN:
        for filename in python_files(method_map):
            for line, text in helptext.messages(ROOT / filename):
                catalog.add(text, None, [(filename, line)])
    return catalog


def python_files(method_map: list[tuple[str, str]]) -> list[str]:
    """The modules the mapping gives to Babel's Python extractor, relative to the project."""
    from babel.util import pathmatch

    found = []
    for path in sorted((ROOT / "cpsfleet").rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        method = next((m for pattern, m in method_map if pathmatch(pattern, relative)), None)
        if method == "python":
            found.append(relative)
    return found


def read(language: str, domain: str = DOMAIN) -> Catalog:
    from babel.messages.pofile import read_po

    with po_path(language, domain).open("rb") as stream:
        return read_po(stream, locale=language, domain=domain)


def update(domain: str = DOMAIN) -> None:
    """Write the domain's template and merge it into each translated language's catalog."""
    from babel.messages.catalog import Catalog
    from babel.messages.pofile import write_po

    template = extract(domain)
    with (LOCALES / f"{domain}.pot").open("wb") as stream:
        write_po(stream, template, width=100, omit_header=False)
    for language in LANGUAGES:
        if language == "en":
            continue  # the code's own words
        path = po_path(language, domain)
        exists = path.exists()
        catalog = read(language, domain) if exists else Catalog(locale=language, domain=domain)
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
    for name in sys.argv[1:] or DOMAINS:
        update(name)

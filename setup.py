"""The build's one step beyond pyproject.toml: compile the message catalogs.

Each ``cpsfleet/i18n/locales/<language>/LC_MESSAGES/cpsfleet.po`` becomes the ``.mo`` beside
it, which ``gettext`` reads at run time (an editable install compiles them in the source
tree). Babel does it, as a build requirement only.
"""

from __future__ import annotations

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

CATALOGS = Path(__file__).parent / "cpsfleet" / "i18n" / "locales"


def compile_catalogs() -> None:
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    for source in sorted(CATALOGS.glob("*/LC_MESSAGES/*.po")):
        with source.open("rb") as stream:
            catalog = read_po(stream)
        with source.with_suffix(".mo").open("wb") as stream:
            write_mo(stream, catalog)


class BuildWithCatalogs(build_py):
    def run(self) -> None:
        compile_catalogs()
        super().run()


setup(cmdclass={"build_py": BuildWithCatalogs})

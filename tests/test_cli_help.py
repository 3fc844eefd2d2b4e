"""``--help`` reads well: placeholders, not Python types or markup; commands in order.

Every command's ``--help`` is rendered as a user sees it, over the real app.
"""

from __future__ import annotations

import re

import pytest
import typer
from typer.core import TyperArgument, TyperGroup, TyperOption
from typer.testing import CliRunner

from cpsfleet import clidoc, clihelp
from cpsfleet.cli import build
from tests.conftest import run_cli

APP = build()
ALL = clidoc.commands(APP)

# Set up, run, look, act: the order each group's --help lists its commands in.
ORDER = {
    "cpsfleet": ["pki", "controller", "agent", "sim"],
    "cpsfleet pki": ["init", "issue", "list", "renew"],
    "cpsfleet controller": [
        *("run", "roster", "user", "token", "dashboard-secret", "validate"),
        *("hosts", "cards", "findings", "alerts", "channels", "readiness", "forecast", "audit"),
        *("rescan", "ack", "silence", "export", "copy-store"),
    ],
    "cpsfleet controller roster": ["import", "list"],
    "cpsfleet controller user": ["add", "list", "set", "password", "remove"],
    "cpsfleet controller token": ["add", "list", "revoke"],
    "cpsfleet controller audit": ["list", "export"],
    "cpsfleet controller silence": ["add", "list", "expire"],
    "cpsfleet controller export": ["hosts", "cards", "readiness"],
    "cpsfleet agent": ["run", "scan"],
    "cpsfleet sim": ["certs", "examples", "readers", "card", "fleet"],
}

# What --help must never show: a Python type (<bool>, <int>, <str>, <path>, list[str],
# <list[FileText]>), a type in angle brackets, or reStructuredText / Markdown backticks.
PYTHON_TYPE = re.compile(
    r"<\s*(bool|int|str|float|path|file|text|datetime|uuid|list|tuple|dict)\b"
    r"|\b(list|tuple|dict|set|Optional|Union)\[|FileText|NoneType",
    re.IGNORECASE,
)
ANGLE_WORD = re.compile(r"<[a-z][\w.\[\]|, ]*>")
PLACEHOLDER = re.compile(r"[A-Z]+(\.\.\.)?")


def help_text(path: str) -> str:
    result = CliRunner().invoke(
        APP, [*path.split()[1:], "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"}
    )
    assert result.exit_code == 0, f"{path} --help: {result.output}"
    return result.output


@pytest.mark.parametrize(("path", "command"), ALL, ids=[path for path, _ in ALL])
def test_help_shows_no_python_type_nor_markup(path: str, command: object) -> None:
    text = help_text(path)
    assert not PYTHON_TYPE.search(text), f"{path} --help shows a Python type:\n{text}"
    assert not ANGLE_WORD.search(text), f"{path} --help shows a type in <>:\n{text}"
    assert "`" not in text, f"{path} --help shows markup (backticks):\n{text}"


@pytest.mark.parametrize(("path", "command"), ALL, ids=[path for path, _ in ALL])
def test_placeholders_are_upper_case_words_and_flags_have_none(
    path: str, command: typer.core.TyperCommand | TyperGroup
) -> None:
    assert isinstance(command, clihelp.Command | clihelp.Group), f"{path} is not made by App"
    ctx = typer.Context(command)
    for param in command.get_params(ctx):
        assert isinstance(param, TyperOption | TyperArgument)
        shown = clihelp.placeholder(param)
        if isinstance(param, TyperOption) and param.is_flag:
            assert shown == "", f"{path} {param.opts}: a flag shows {shown!r}"
        else:
            assert PLACEHOLDER.fullmatch(shown), f"{path} {param.opts}: placeholder {shown!r}"
            assert param.metavar == shown


def test_every_group_has_its_order() -> None:
    groups = {path for path, command in ALL if isinstance(command, TyperGroup)}
    assert groups == set(ORDER)


@pytest.mark.parametrize("path", sorted(ORDER))
def test_groups_list_their_commands_in_order(path: str) -> None:
    group = dict(ALL)[path]
    assert isinstance(group, TyperGroup)
    assert clidoc.subcommands(group) == ORDER[path]
    text = help_text(path)
    commands = text[text.index("Commands") :]
    found = [re.search(rf"^\W*{re.escape(name)}\s", commands, re.MULTILINE) for name in ORDER[path]]
    assert all(found), f"{path} --help lacks a command:\n{text}"
    positions = [match.start() for match in found if match]
    assert positions == sorted(positions), f"{path} --help lists its commands out of order:\n{text}"


def test_usage_names_arguments_as_click_does() -> None:
    usages = {
        "cpsfleet controller validate": "[OPTIONS] FILE...",
        "cpsfleet pki issue": "[OPTIONS] ROLE [NAME]",
        "cpsfleet controller rescan": "[OPTIONS] [HOST...]",
    }
    for path, arguments in usages.items():
        usage = help_text(path).strip().splitlines()[0].strip()
        assert usage.endswith(f"{path.removeprefix('cpsfleet ')} {arguments}"), usage


# ``--help`` in the run's language: each command's and parameter's help is looked up in the
# catalog as it is shown (cpsfleet.clihelp), with Typer's words around it.


def french_help(path: str, *lang: str) -> str:
    result = CliRunner().invoke(
        APP,
        [*lang, *path.split()[1:], "--help"],
        env={"COLUMNS": "200", "NO_COLOR": "1", "CPSFLEET_LANG": "fr"},
    )
    assert result.exit_code == 0, f"{path} --help: {result.output}"
    return result.output


def test_help_speaks_french_then_english_in_one_process() -> None:
    french = french_help("cpsfleet controller alerts")
    assert "Utilisation :" in french and "Usage:" not in french
    assert "Afficher ce message et quitter." in french
    assert "Show this message and exit." not in french
    assert "Afficher du JSON au lieu d'un tableau." in french
    english = french_help("cpsfleet controller alerts", "--lang", "en")
    assert "Usage:" in english and "Print JSON instead of a table." in english
    assert "Utilisation" not in english  # the English was kept aside, not overwritten
    assert "Afficher" not in french_help("cpsfleet", "--lang", "en")


def test_a_group_lists_its_commands_in_french() -> None:
    text = french_help("cpsfleet controller")
    assert "Commandes" in text and "Commands" not in text
    # The first line of each command's help, translated from its docstring.
    assert "Les alertes, en cours d'abord" in text


def english(thing: object) -> str | None:
    """The help of ``thing`` as written in the code, before any --help translated it."""
    return vars(thing).get("_english_help", getattr(thing, "help", None))


def test_every_help_shown_is_in_the_catalog() -> None:
    """A help written where the extraction cannot find it (an f-string, a help built at run
    time) would stay English in French: every help of every command and parameter is one
    the catalog has, translated."""
    from babel.messages.pofile import read_po

    from cpsfleet.i18n import catalogs

    with catalogs.po_path("fr").open("rb") as stream:
        french = {m.id: m.string for m in read_po(stream) if m.id}
    missing = []
    for path, command in ALL:
        texts = [english(command), *(english(p) for p in command.params)]
        for text in texts:
            if text and not french.get(clihelp.translate_source(text)):
                missing.append(f"{path}: {text[:60]}")
    for text in clihelp.ADDED_OPTIONS + tuple(clihelp.TYPER_WORDS.values()):
        if not french.get(text):
            missing.append(text)
    assert missing == []


@pytest.mark.parametrize(
    ("args", "french", "english"),
    [
        (["controller", "hosts", "--sit", "x"], "option inconnue : --sit", "No such option: --sit"),
        (["controller", "hostz"], "commande inconnue : 'hostz'", "No such command 'hostz'"),
        (["pki", "issue"], "argument manquant : 'ROLE'", "Missing argument 'ROLE'"),
        (["controller", "ack"], "option manquante : '--rule'", "Missing option '--rule'"),
        (["controller", "hosts", "--site"], "l'option '--site' demande", "requires a value"),
        (["controller", "hosts", "a", "b"], "arguments en trop (a b)", "extra arguments (a b)"),
    ],
)
def test_a_command_line_click_cannot_parse_is_told_in_the_run_s_language(
    args: list[str], french: str, english: str
) -> None:
    wide = {"COLUMNS": "200", "NO_COLOR": "1"}
    done = run_cli("--lang", "fr", *args, env=wide)
    assert done.returncode == 2 and french in done.stderr, done.stderr
    assert "Utilisation :" in done.stderr or "Erreur" in done.stderr
    done = run_cli("--lang", "en", *args, env=wide)
    assert done.returncode == 2 and english in done.stderr, done.stderr

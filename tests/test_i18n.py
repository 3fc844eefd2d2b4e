"""French for people, English on request: the catalogs are complete and current, the
language is chosen as documented, and the command's tables speak it."""

from __future__ import annotations

import gettext
import json
import os
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from cpsfleet import i18n
from cpsfleet.agent.summary import render
from cpsfleet.controller.cli import labels
from cpsfleet.controller.settings import SettingsError, load_settings
from cpsfleet.i18n import catalogs
from cpsfleet.sim.fleet.documents import host_status
from cpsfleet.sim.fleet.model import generate_fleet
from tests.conftest import run_cli
from tests.test_dashboard import fleet_database


def _translated(string: str | tuple[str, ...] | None) -> bool:
    return all(string) if isinstance(string, tuple) else bool(string)


@pytest.fixture(scope="module", params=i18n.DOMAINS)
def domain(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def extracted(domain: str) -> set[str | tuple[str, ...]]:
    return {message.id for message in catalogs.extract(domain) if message.id}


def test_every_message_of_the_code_has_its_french_translation(
    domain: str, extracted: set[str | tuple[str, ...]]
) -> None:
    french = {m.id: m.string for m in catalogs.read("fr", domain) if m.id}
    missing = sorted((m for m in extracted if not _translated(french.get(m))), key=str)
    assert missing == [], "translate them: python -m cpsfleet.i18n.catalogs, then the .po"


def test_the_catalog_holds_no_translation_of_a_message_gone_from_the_code(
    domain: str, extracted: set[str | tuple[str, ...]]
) -> None:
    french = {message.id for message in catalogs.read("fr", domain) if message.id}
    assert sorted(french - extracted, key=str) == []


def test_no_translation_is_left_fuzzy(domain: str) -> None:
    assert [m.id for m in catalogs.read("fr", domain) if m.id and m.fuzzy] == []


def test_the_compiled_catalog_is_the_translated_one(domain: str) -> None:
    """The build compiled the .po (setup.py): gettext reads every translation from the .mo."""
    compiled = gettext.translation(domain, i18n.LOCALES, languages=["fr"])
    for message in catalogs.read("fr", domain):
        if isinstance(message.id, tuple):  # a plural: one, then many
            singular, plural = message.id
            translated = (compiled.ngettext(singular, plural, n) for n in (1, 2))
            assert tuple(translated) == (message.string[0], message.string[2]), message.id
        elif message.id:
            assert compiled.gettext(message.id) == message.string, message.id


def test_a_message_is_in_one_catalog_only() -> None:
    """Each file is one catalog's (the babel-*.cfg mappings do not overlap)."""
    seen: dict[str, str] = {}
    for name in i18n.DOMAINS:
        for message in catalogs.extract(name):
            for filename, _line in message.locations:
                assert seen.setdefault(filename, name) == name, (filename, name)


@pytest.mark.parametrize(
    ("explicit", "environ", "chosen"),
    [
        (None, {}, "fr"),  # nothing said: French
        (None, {"LANG": "C.UTF-8"}, "fr"),
        (None, {"LANG": "fr_FR.UTF-8"}, "fr"),
        (None, {"LANG": "en_GB.UTF-8"}, "en"),
        (None, {"LANG": "de_DE.UTF-8"}, "fr"),  # not ours: the default
        (None, {"LC_ALL": "fr_FR.UTF-8", "LANG": "en_US.UTF-8"}, "fr"),  # LC_ALL first
        (None, {"LC_MESSAGES": "en_US", "LANG": "fr_FR.UTF-8"}, "en"),
        ("en", {"LANG": "fr_FR.UTF-8"}, "en"),  # --lang wins
        (None, {"CPSFLEET_LANG": "en", "LC_ALL": "fr_FR.UTF-8"}, "en"),  # before the locale
        ("fr", {"CPSFLEET_LANG": "en"}, "fr"),  # but after --lang
        (None, {"CPSFLEET_LANG": "", "LANG": "en_US.UTF-8"}, "en"),  # empty: not set
        ("fr", {"LC_ALL": "en_US.UTF-8"}, "fr"),
    ],
)
def test_the_language_is_the_one_asked_then_the_locale_then_french(
    explicit: str | None, environ: dict[str, str], chosen: str
) -> None:
    assert i18n.choose(explicit, environ) == chosen


def test_an_unknown_language_is_refused_naming_those_spoken() -> None:
    with pytest.raises(i18n.LanguageError, match="unknown language 'de': use one of fr, en"):
        i18n.choose("de", {})
    with pytest.raises(i18n.LanguageError, match="unknown language 'es'"):
        i18n.choose(None, {"CPSFLEET_LANG": "es"})
    done = run_cli("--lang", "de", "controller", "hosts")
    assert done.returncode == 2 and "unknown language 'de'" in done.stderr


def test_tokens_become_words_and_keys_headers() -> None:
    with i18n.use("fr"):
        assert labels.header("days_left") == "jours restants"
        assert labels.value("severity", "critical") == "critique"
        assert labels.value("status", "superseded") == "remplacée"
        assert labels.value("site", "critical") == "critical"  # not a token there
    assert labels.header("days_left") == "days left"


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield fleet_database(tmp_path_factory.mktemp("i18n"))


def cards(database: Path, *options: str, env: dict[str, str] | None = None) -> str:
    done = run_cli(*options, "controller", "cards", "--database", str(database), env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_tables_speak_french_by_default_and_english_on_request(database: Path) -> None:
    unset = {"CPSFLEET_LANG": "", "LANG": "", "LC_ALL": "", "LC_MESSAGES": ""}
    french = cards(database, env=unset)
    assert "jours restants" in french and "critique" in french and "insérée sur" in french
    assert "days left" not in french
    assert "jours restants" in cards(database, "--lang", "fr")  # the suite's is English
    english = cards(database, env={"CPSFLEET_LANG": "", "LANG": "en_GB.UTF-8"})
    assert "days left" in english and "present on" in english
    assert "days left" in cards(database, "--lang", "en", env={"LC_ALL": "fr_FR.UTF-8"})


def test_json_stays_english_whatever_the_language(database: Path) -> None:
    done = run_cli("--lang", "fr", "controller", "cards", "--json", "--database", str(database))
    rows = json.loads(done.stdout)
    assert {"days_left", "severity", "in_reader"} <= set(rows[0])
    assert {row["severity"] for row in rows} <= {"critical", "warning", "info", None}


def test_the_suite_itself_runs_in_english() -> None:
    assert os.environ["CPSFLEET_LANG"] == "en" and i18n.current() == "en"


def test_the_controller_speaks_its_configured_language_else_the_locale_s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "controller.toml"
    config.write_text('language = "fr"\n')
    assert load_settings(config, environ={}).spoken == "fr"  # though the suite's is English
    config.write_text("")
    assert load_settings(config, environ={}).spoken == "en"  # CPSFLEET_LANG: the suite's
    monkeypatch.delenv("CPSFLEET_LANG")
    monkeypatch.setenv("LANG", "C.UTF-8")
    assert load_settings(config, environ={}).spoken == "fr"
    monkeypatch.setenv("LANG", "en_GB.UTF-8")
    assert load_settings(config, environ={}).spoken == "en"
    config.write_text('language = "de"\n')
    with pytest.raises(SettingsError, match="language: unknown language 'de'"):
        load_settings(config, environ={})


def test_dates_read_as_people_write_them() -> None:
    day = date(2026, 12, 13)
    with i18n.use("fr"):
        assert i18n.medium_date(day) == "13 déc. 2026"
        assert i18n.medium_date(date(2027, 2, 1)) == "1 févr. 2027"
    assert i18n.medium_date(day) == "Dec 13, 2026"


def test_agent_scan_summarises_in_french() -> None:
    """What `cpsfleet agent scan` prints, from a simulated workstation's inventory."""
    workstation = generate_fleet(3, seed=5)[1]
    status = host_status(workstation, datetime(2026, 12, 3, 10, 0, tzinfo=UTC))
    with i18n.use("fr"):
        french = render(status)
    assert french.splitlines()[0].startswith("Poste ")
    assert "PC/SC      disponible" in french and "Lecteurs   4" in french
    assert "certificat d'authentification : PERRIN ISABELLE, Infirmier" in french
    assert "jours restants)" in french and "code PIN : 3 essai(s) restant(s) sur 3" in french
    assert french.splitlines()[-1].startswith("Prêt pour les cartes CPS : oui")
    english = render(status)
    assert english.splitlines()[0].startswith("Host ") and "days left)" in english


def test_table_values_read_as_people_write_them() -> None:
    moment = datetime(2026, 12, 13, 8, 30, tzinfo=UTC)
    labels.show_times_in(ZoneInfo("Europe/Paris"))
    with i18n.use("fr"):
        assert labels.value("last_seen", moment) == "13 déc. 2026 09:30"
        assert (labels.value("in_reader", True), labels.value("in_reader", False)) == (
            "oui",
            "non",
        )
        assert labels.value("cards", 12345) == "12\u202f345"
        assert labels.value("days_left", -5) == -5
    assert labels.value("last_seen", moment) == "Dec 13, 2026 09:30"
    assert labels.value("in_reader", True) == "yes" and labels.value("cards", 12345) == 12345


def test_command_errors_and_empty_lists_in_french(database: Path) -> None:
    done = run_cli(
        "--lang", "fr", "controller", "hosts", "--database", str(database), "--host", "x"
    )
    assert done.returncode == 2
    assert done.stderr == (
        "erreur : poste inconnu 'x' : `cpsfleet controller hosts` liste le parc\n"
    )
    empty = run_cli(
        "--lang", "fr", "controller", "findings", "--database", str(database), "--site", "Nulle"
    )
    assert empty.stdout == "aucun constat\n"


def test_the_readiness_table_speaks_of_titles_and_states(tmp_path: Path) -> None:
    database = fleet_database(tmp_path)
    done = run_cli("--lang", "fr", "controller", "readiness", "--database", str(database))
    assert done.returncode == 0, done.stderr
    assert "Médecin" in done.stdout and "Infirmier/Infirmière" in done.stdout
    assert "état" in done.stdout.splitlines()[0] and "renew_card" not in done.stdout


def test_card_kinds_read_as_words(database: Path) -> None:
    with i18n.use("fr"):
        assert labels.value("kind", "vitale2") == "carte Vitale 2"
        assert labels.value("kind", "cps9") == "cps9"  # a kind of a newer agent: as it comes
    table = cards(database, "--lang", "fr")
    assert "carte Vitale 2" in table and "vitale2" not in table


def test_acknowledging_an_unknown_host_is_refused_in_french(database: Path) -> None:
    done = run_cli(
        "--lang", "fr", "controller", "ack", "--rule", "card_expired", "--host", "ws-nowhere",
        "--by", "it", "--reason", "test", "--database", str(database),
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.startswith("erreur : poste inconnu 'ws-nowhere' : le contrôleur ne l'a")


def test_a_configuration_error_in_french(tmp_path: Path) -> None:
    config = tmp_path / "controller.toml"
    config.write_text("nonsense = 1\n")
    done = run_cli("--lang", "fr", "controller", "hosts", "--config", str(config))
    assert done.returncode == 2
    assert done.stderr == f"erreur : {config} : clé(s) inconnue(s) : nonsense\n"


def test_readiness_days_read_as_people_write_them() -> None:
    with i18n.use("fr"):
        assert labels.value("card_expires", "2026-12-13") == "13 déc. 2026"
        assert labels.value("card_expires", None) is None
    assert labels.value("card_updated", "2024-02-29") == "Feb 29, 2024"


def test_errors_from_deep_in_the_code_speak_french(tmp_path: Path) -> None:
    """The PKI's, the agent configuration's and the broker URL's errors, as the command
    prints them, in French; the same in English on request."""
    missing = tmp_path / "nowhere"
    pki = run_cli("--lang", "fr", "pki", "list", "--dir", str(missing))
    assert pki.returncode == 2
    assert f"erreur : {missing} n'est pas un répertoire : indiquez" in pki.stderr
    config = tmp_path / "agent.toml"
    config.write_text('broker = "http://broker.example"\n')
    agent = run_cli("--lang", "fr", "agent", "scan", "--config", str(config))
    assert agent.returncode == 2
    assert "l'URL du broker 'http://broker.example' doit commencer par mqtt://" in agent.stderr
    english = run_cli("--lang", "en", "agent", "scan", "--config", str(config))
    assert "broker URL 'http://broker.example' must start with mqtt://" in english.stderr


def test_the_agent_service_speaks_the_environment_s_language(tmp_path: Path) -> None:
    """``agent run`` as the service manager starts it has no --lang: CPSFLEET_LANG or the
    locale chooses, and a language it does not speak does not stop it from saying why."""
    absent = tmp_path / "absent.toml"
    french = run_cli("agent", "run", "--config", str(absent), env={"CPSFLEET_LANG": "fr"})
    assert french.returncode == 2
    assert f"erreur : {absent} : ce fichier de configuration n'existe pas" in french.stderr
    odd = run_cli("agent", "run", "--config", str(absent), env={"CPSFLEET_LANG": "de"})
    assert odd.returncode == 2 and "ce fichier de configuration n'existe pas" in odd.stderr


def test_decimals_read_as_in_the_language() -> None:
    with i18n.use("fr"):
        assert i18n.decimal(2.456, 2) == "2,46" and i18n.decimal(12.0) == "12,0"
    with i18n.use("en"):
        assert i18n.decimal(2.456, 2) == "2.46"

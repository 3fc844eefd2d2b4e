"""``cpsfleet agent run`` as the service manager starts it, without the command-line library.

systemd, launchd and NSSM start the daemon as ``cpsfleet agent run --config PATH``
(``ansible/roles/cpsfleet_agent``). ``cpsfleet`` hands that exact command line here instead
of to Typer: Typer converts option values with pydantic, and the two would then stay in the
daemon's memory as long as it runs, 10 MB of it (``python -m tests.bench_agent``: 52.7 MB
with them, 42.8 without). Any other command line, ``--help`` or a mistake included, is
Typer's (``cpsfleet.agent.cli``), which words the help and the errors.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cpsfleet import i18n, logs
from cpsfleet.agent.config import ConfigError, load_config
from cpsfleet.agent.daemon import AgentDaemon
from cpsfleet.agent.summary import EXIT_USAGE
from cpsfleet.i18n import _
from cpsfleet.signals import stop_on_signals

CONFIG_OPTION = "--config"


@dataclass(frozen=True)
class RunCommand:
    """``agent run``, with the configuration file it names, if any."""

    config: Path | None


def parse_run(args: Sequence[str]) -> RunCommand | None:
    """``args`` (what follows ``cpsfleet agent``) as ``run [--config PATH]``; None when they
    say anything else, for Typer to handle."""
    if list(args[:1]) != ["run"]:
        return None
    options = list(args[1:])
    if not options:
        return RunCommand(None)
    if len(options) == 2 and options[0] == CONFIG_OPTION:
        value = options[1]
    elif len(options) == 1 and options[0].startswith(f"{CONFIG_OPTION}="):
        value = options[0].removeprefix(f"{CONFIG_OPTION}=")
    else:
        return None
    # An empty value or one like an option is most likely a mistake: Typer words it.
    if not value or value.startswith("-"):
        return None
    return RunCommand(Path(value))


def run(config: Path | None) -> int:
    """Run the daemon until SIGTERM or Ctrl-C; the exit code (2: unusable configuration).
    Its errors speak the environment's language (``CPSFLEET_LANG``, the locale), as
    ``--lang`` is not among the options the service manager gives."""
    try:
        i18n.set_language(i18n.choose(None, os.environ))
    except i18n.LanguageError:
        pass  # French, the default; the daemon does not stop for a word
    try:
        settings = load_config(config)
    except ConfigError as error:
        print(_("error: {message}").format(message=error), file=sys.stderr, flush=True)
        return EXIT_USAGE
    logs.configure()
    AgentDaemon(settings).run(stop_on_signals())
    return 0

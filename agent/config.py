"""The agent's configuration: a TOML file, overridden by ``CPSFLEET_*`` environment variables.

site = "Lyon Part-Dieu"      # the site label reported with the host
host_id = "ws-lyon-07"       # optional: overrides the id derived from the machine
"""

from __future__ import annotations

import os
import platform
import tomllib
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PATHS = {
    "Linux": Path("/etc/cpsfleet/agent.toml"),
    "Darwin": Path("/Library/Application Support/cpsfleet/agent.toml"),
    "Windows": Path(os.environ.get("PROGRAMDATA", "C:/ProgramData")) / "cpsfleet" / "agent.toml",
}
KEYS = ("site", "host_id")


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the file and the fault."""


@dataclass(frozen=True)
class AgentConfig:
    site: str | None = None
    host_id: str | None = None


def default_path() -> Path:
    return DEFAULT_PATHS.get(platform.system(), DEFAULT_PATHS["Linux"])


def load_config(path: Path | None = None, environ: dict[str, str] | None = None) -> AgentConfig:
    """The file at ``path`` (or the OS default, if it exists), then the environment on top."""
    values = _read_file(path) if path else _read_file(default_path(), missing_ok=True)
    env = os.environ if environ is None else environ
    for key in KEYS:
        if (value := env.get(f"CPSFLEET_{key.upper()}")) is not None:
            values[key] = value
    return AgentConfig(**values)


def _read_file(path: Path, missing_ok: bool = False) -> dict[str, str]:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if missing_ok:
            return {}
        raise ConfigError(f"{path}: no such configuration file") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"{path}: cannot read the configuration: {error}") from error
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)}; known: {', '.join(KEYS)}")
    bad = [key for key, value in raw.items() if not isinstance(value, str) or not value]
    if bad:
        raise ConfigError(f"{path}: {', '.join(bad)} must be non-empty strings")
    return dict(raw)

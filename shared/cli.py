"""Command lines derived from the settings classes: one place for every default and help text.

Each service's ``__main__`` names the settings sections it reads; every field becomes a flag
(``--kebab-case`` of the field name; other spellings, such as FastChat's, as ``aliases``), with the
field's ``description`` as help. Flags win over the environment, which wins over the class
defaults; a bad value is a usage error naming the flag.

Aliases are rewritten in ``argv`` rather than declared on the fields: a pydantic alias would also
rename the field's environment variable and drop its prefix.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings, CliSettingsSource

S = TypeVar("S", bound=BaseSettings)


class SettingsParser:
    """An ``argparse`` parser holding the flags of several settings sections.

    Extra, non-settings flags (a positional, a one-off switch) can be added to ``parser`` before
    ``parse`` is called; they come back in the namespace. ``fields`` names the settings a command
    uses when it uses only some of them: the others get no flag (the environment still sets them).
    """

    def __init__(
        self,
        description: str,
        *sections: type[BaseSettings],
        aliases: Mapping[str, str] | None = None,
        prog: str | None = None,
        fields: Collection[str] | None = None,
    ) -> None:
        self.aliases = dict(aliases or {})
        epilog = (
            "other spellings: " + ", ".join(f"{a} = {f}" for a, f in self.aliases.items())
            if self.aliases
            else None
        )
        self.parser = argparse.ArgumentParser(description=description, prog=prog, epilog=epilog)
        self._sections = sections
        self._sources: dict[type[BaseSettings], CliSettingsSource[Any]] = {}
        for section in sections:
            self._sources[section] = CliSettingsSource(
                section,
                root_parser=self.parser,
                cli_kebab_case=True,
                cli_implicit_flags=True,
                cli_enforce_required=False,
                cli_hide_none_type=True,
                cli_avoid_json=True,
                add_argument_method=_only_flags_of(fields),
            )
        self.namespace: argparse.Namespace | None = None

    def parse(self, argv: Sequence[str] | None = None) -> argparse.Namespace:
        args = list(sys.argv[1:] if argv is None else argv)
        self.namespace = self.parser.parse_args([self._canonical(arg) for arg in args])
        return self.namespace

    def _canonical(self, arg: str) -> str:
        flag, sep, value = arg.partition("=")
        return f"{self.aliases[flag]}{sep}{value}" if flag in self.aliases else arg

    def settings(self, section: type[S]) -> S:
        """The section as the environment and the parsed flags set it."""
        if self.namespace is None:
            self.parse()
        source = self._sources[section](parsed_args=self.namespace)
        try:
            return section(_cli_settings_source=source)  # type: ignore[call-arg]
        except ValidationError as exc:
            problems = "; ".join(
                f"--{str(err['loc'][0]).replace('_', '-')}: {err['msg']}" for err in exc.errors()
            )
            self.parser.error(problems)

    def export(self, section: type[BaseSettings]) -> None:
        """Put the section's flags given on the command line into the environment, so that code
        reading the settings later (a Celery task, a child process) sees what the flags said."""
        given = vars(self.namespace or argparse.Namespace())
        prefix = section.model_config.get("env_prefix") or ""
        values = self.settings(section)
        for name in section.model_fields:
            if name in given:
                value = getattr(values, name)
                os.environ[f"{prefix}{name}".upper()] = "" if value is None else str(value)


def _only_flags_of(fields: Collection[str] | None) -> Callable[..., Any]:
    """``add_argument`` that leaves out the flags of settings not in ``fields`` (None: none)."""
    wanted = None if fields is None else {f"--{name.replace('_', '-')}" for name in fields}

    def add_argument(parser: Any, *flags: str, **kwargs: Any) -> Any:
        if wanted is None or wanted.intersection(flags):
            return parser.add_argument(*flags, **kwargs)
        return None

    return add_argument


def parse_settings(
    description: str,
    *sections: type[BaseSettings],
    argv: Sequence[str] | None = None,
    aliases: Mapping[str, str] | None = None,
    prog: str | None = None,
) -> tuple[Any, ...]:
    """Parse ``argv`` into one instance per section, in the order given."""
    cli = SettingsParser(description, *sections, aliases=aliases, prog=prog)
    cli.parse(argv)
    return tuple(cli.settings(section) for section in sections)


def fail(message: object, code: int = 2, prefix: str = "error") -> int:
    """Say ``<prefix>: <message>`` on stderr and return ``code``, a command's exit status."""
    print(f"{prefix}: {message}", file=sys.stderr)
    return code


def exit_status(
    action: Callable[[], str],
    *expected: type[Exception],
    code: int = 2,
    prefix: str = "error",
) -> int:
    """Run a command's work: 0 and the line it returns on stdout, or ``code`` and the reason on
    stderr (no traceback) when it raises one of the ``expected`` errors."""
    try:
        done = action()
    except expected as exc:
        return fail(exc, code, prefix)
    print(done)
    return 0

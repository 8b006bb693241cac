"""What every `ivr` command shares: the help format (each option with its default), the
subcommand walk, `--version`, and the options that go before or after the subcommand."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ivr.config import ConfigError, Settings, load_settings


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help ends with its default: argparse's "(default: X)" where there is
    a value to show, "(default: off)" for a flag; options without a value by default say
    what happens then in their own words ("default: ..."). A text of several lines (the
    dial epilog) keeps its lines."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "default" in text or action.default is argparse.SUPPRESS:
            return text
        if isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction):
            return f"{text} (default: {'on' if action.default else 'off'})"
        if action.default is None or (not action.option_strings and action.nargs is None):
            return text
        return f"{text} (default: %(default)s)"


def parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """`parser` and every subcommand's parser under it, depth first."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):  # aliases: once
                yield from parsers(child)


def is_leaf(parser: argparse.ArgumentParser) -> bool:
    return not any(isinstance(a, argparse._SubParsersAction) for a in parser._actions)


class VersionAction(argparse.Action):
    """`ivr --version`: what the server's `ivr_build_info` metric says of this install."""

    def __init__(self, option_strings: list[str], dest: str, **kw: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kw)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        print("\n".join(version_lines(getattr(namespace, "config", None))))
        parser.exit()


def version_lines(config: Path | None) -> list[str]:
    """The package's version, then ivr_build_info's labels: version, python, and the ASR
    engine `ivr serve` would load with these settings (the environment and `config`)."""
    import platform

    import ivr

    try:
        engine = serving_engine(load_settings(config))
    except ConfigError as exc:
        engine = f"unknown ({exc})"
    return [f"ivr {ivr.__version__}", f"python {platform.python_version()}", f"engine {engine}"]


def serving_engine(settings: Settings) -> str:
    """The name of the engine `load_engine` picks for `settings`, without loading it."""
    from ivr.asr.engines import bundled_whisper_model

    kind = settings.asr_engine
    if kind != "auto":
        return kind
    if settings.vosk_model is not None:
        return "vosk"
    if settings.whisper_model is not None or bundled_whisper_model() is not None:
        return "whisper"
    return "pocketsphinx"


def common_options(p: argparse.ArgumentParser, defaults: argparse.Namespace | None) -> None:
    """--config and -v, before the subcommand (`defaults` given) or after it."""
    kw: dict[str, Any] = {"default": argparse.SUPPRESS} if defaults is None else {}
    p.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="YAML configuration file; IVR_* environment variables override it (default: none,"
        " the built-in defaults and the environment)",
        **({"default": defaults.config} if defaults is not None else kw),
    )
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="debug logging (default: off)",
        **({"default": defaults.verbose} if defaults is not None else kw),
    )

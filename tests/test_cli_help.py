"""The command line as a person meets it: every option explains itself and shows its
default, `--version` says what the server's build info says, `--config` works before and
after the subcommand, `recognize` points a flow at `ivr grammar test`, `say` tells what it
wrote and `dial --help` (and the README) name every event it prints."""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

import ivr
from ivr.cli import build_parser
from ivr.cli_common import HelpFormatter, parsers
from ivr.dial import EVENTS

ROOT = Path(__file__).resolve().parent.parent


def ivr_cli(*args: str, **env: str | None) -> subprocess.CompletedProcess[str]:
    """`python -m ivr ARGS` with `env` on top of ours (None: unset)."""
    full = {**os.environ, **env}
    return subprocess.run(
        [sys.executable, "-m", "ivr", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env={k: v for k, v in full.items() if v is not None},
        timeout=120,
    )


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    skip = (argparse._HelpAction, argparse._SubParsersAction)
    return [a for a in parser._actions if not isinstance(a, skip) and a.dest != "version"]


def test_every_option_of_every_subcommand_has_help_and_shows_its_default() -> None:
    root = build_parser()
    seen = 0
    for parser in parsers(root):
        assert parser.formatter_class is HelpFormatter, parser.prog
        parser.format_help()  # every %(default)s renders
        formatter = HelpFormatter(parser.prog)
        for action in _options(parser):
            seen += 1
            where = f"{parser.prog} {'/'.join(action.option_strings) or action.dest}"
            assert action.help and action.help.strip(), f"{where}: no help text"
            text = formatter._get_help_string(action) or ""
            needs_default = action.option_strings and not action.required
            if not action.option_strings and action.nargs in ("?", "*"):
                needs_default = True  # an optional positional
            if needs_default:
                assert "default" in text, f"{where}: its help shows no default: {text!r}"
    assert seen > 40  # serve, dial, recognize, say, models, token, grammar: all walked


def test_scopes_help_lists_every_scope() -> None:
    from ivr.config import SCOPES

    done = ivr_cli("token", "new", "--help")
    assert done.returncode == 0
    flat = " ".join(done.stdout.split())
    for scope in SCOPES:
        assert scope in flat
    assert "* for all" in flat


def test_version_is_the_package_version_and_the_build_info_labels() -> None:
    done = ivr_cli("--version", IVR_ASR_ENGINE="pocketsphinx")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines == [
        f"ivr {ivr.__version__}",
        f"python {platform.python_version()}",
        "engine pocketsphinx",
    ]
    assert ivr.__version__ == version("ivr")  # the installed distribution's, too
    done = ivr_cli("--version")  # auto: the bundled Whisper model is installed here
    assert done.stdout.splitlines()[2] in ("engine whisper", "engine pocketsphinx")


def test_config_goes_before_or_after_the_subcommand(tmp_path: Path) -> None:
    parser = build_parser()
    cfg = tmp_path / "ivr.yaml"
    before = parser.parse_args(["--config", str(cfg), "serve"])
    after = parser.parse_args(["serve", "--config", str(cfg)])
    assert before.config == after.config == cfg
    assert parser.parse_args(["serve"]).config is None
    assert parser.parse_args(["grammar", "check", "--config", str(cfg)]).config == cfg
    assert parser.parse_args(["serve", "-v"]).verbose is True
    assert parser.parse_args(["--config", "a.yaml", "serve", "--config", str(cfg)]).config == cfg

    # The file is read in either place: a bad setting in it stops `ivr serve` both ways.
    cfg.write_text("port: 70000\n")
    outcomes = [
        ivr_cli(*args)
        for args in (["serve", "--config", str(cfg)], ["--config", str(cfg), "serve"])
    ]
    for done in outcomes:
        assert done.returncode == 2
        assert f"ivr serve: {cfg}: port:" in done.stderr
    assert outcomes[0].stderr == outcomes[1].stderr

    # ... and what it says is used: the tokens it configures are the ones listed.
    cfg.write_text(
        f"data_dir: {tmp_path / 'data'}\napi_tokens: ['crm:" + "a" * 64 + ":callbacks.read']\n"
    )
    listed = [
        ivr_cli(*args, IVR_API_TOKENS=None, IVR_DATABASE_URL=None)
        for args in (
            ["token", "list", "--config", str(cfg)],
            ["--config", str(cfg), "token", "list"],
        )
    ]
    for done in listed:
        assert done.returncode == 0, done.stderr
        assert re.search(r"^crm\s+aaaaaaaaaaaa\s+callbacks\.read\s+active$", done.stdout, re.M)
    assert listed[0].stdout == listed[1].stdout


def test_recognize_with_a_flow_points_at_grammar_test(tmp_path: Path) -> None:
    wav = tmp_path / "hi.wav"
    assert ivr_cli("say", "check my balance", "-o", str(wav), "--rate", "8000").returncode == 0
    done = ivr_cli("recognize", str(wav), "--grammar", "hotline")
    assert done.returncode == 2
    assert "'hotline' is a flow, not a grammar" in done.stderr
    assert f"ivr grammar test hotline --audio {wav}" in done.stderr
    assert "digits, yesno" in done.stderr  # the grammars it could have meant
    assert "Traceback" not in done.stderr and done.stdout == ""
    # What it points at works on the same file: the flow's first question hears it.
    tested = ivr_cli("grammar", "test", "hotline", "--audio", str(wav), "--json")
    assert tested.returncode == 0, tested.stderr
    assert json.loads(tested.stdout)["intent"] == "balance"


def test_say_prints_what_it_wrote(tmp_path: Path) -> None:
    from ivr.audio.pcm import read_wav

    out = tmp_path / "hello.wav"
    done = ivr_cli("say", "Hello there.", "-o", str(out), "--rate", "8000")
    assert done.returncode == 0, done.stderr
    audio = read_wav(out)
    match = re.fullmatch(r"wrote (.+): (\d+\.\d\d) s, (\d+) Hz, mono 16-bit PCM WAV\n", done.stdout)
    assert match, done.stdout
    assert match[1] == str(out) and int(match[3]) == audio.rate == 8000
    assert float(match[2]) == pytest.approx(audio.duration, abs=0.01)


def test_dial_documents_every_event_it_prints() -> None:
    done = ivr_cli("dial", "--help")
    assert done.returncode == 0
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Caller simulator") :]
    section = section[: section.index("\n## ")]
    for event in EVENTS:
        assert re.search(rf"^  {event}: ", done.stdout, re.M), f"--help: {event}"
        assert f"`{event}`" in section, f"README: {event}"
    # Every event the feed can print is in the list (the simulator's own too).
    from ivr.dial import PRINTED

    assert PRINTED | {"caller_hangup"} == set(EVENTS)

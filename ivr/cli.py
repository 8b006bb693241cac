"""The `ivr` command line."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

from ivr.asr.base import Engine
from ivr.asr.models import ModelError
from ivr.cli_common import HelpFormatter, VersionAction, common_options, is_leaf, parsers
from ivr.cli_tokens import add_parser as add_token_parser
from ivr.config import ConfigError, Settings, load_settings
from ivr.dialog.flow import FlowError
from ivr.grammar import (
    Grammar,
    GrammarError,
    NotAGrammar,
    from_phrases,
    known_grammars,
    load_grammar,
)
from ivr.logs import setup as setup_logging
from ivr.tuning.commands import add_parser as add_grammar_parser

log = logging.getLogger("ivr")


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(getattr(args, "config", None))


def cmd_recognize(args: argparse.Namespace) -> int:
    from ivr.audio.pcm import read_wav

    settings = _settings(args)
    grammar: Grammar | None = None
    if args.phrases is not None:
        grammar = from_phrases(args.phrases.split(","))
    elif args.grammar:
        try:
            grammar = load_grammar(args.grammar, settings.grammar_dir)
        except NotAGrammar as exc:
            print(f"ivr recognize: {_flow_hint(exc, args)}", file=sys.stderr)
            return 2
    engine = _cli_engine(args, settings)
    try:
        audio = read_wav(args.audio)
    except ValueError as exc:
        raise SystemExit(f"ivr recognize: {exc}") from exc
    rate = audio.rate if audio.rate in (8000, 16000) else 16000
    rec = engine.create(grammar, rate=rate, nbest=args.nbest)
    rec.feed(audio.to_rate(rate).tobytes())
    result = rec.final()
    out: dict[str, object] = {
        "text": result.text,
        "confidence": result.confidence,
        "alternatives": [{"text": a.text, "confidence": a.confidence} for a in result.alternatives],
        "engine": result.engine,
    }
    if grammar is not None:
        match = grammar.match(result.text, result.confidence)
        out["intent"] = match.intent
        out["score"] = match.score
        out["reason"] = match.reason
    print(json.dumps(out, ensure_ascii=False))
    return 0


def _flow_hint(exc: NotAGrammar, args: argparse.Namespace) -> str:
    """What to run instead of recognizing against a flow: `ivr grammar test`, which hears the
    file as the flow's node would, with that node's grammar."""
    audio = shlex.quote(str(args.audio))
    flow = shlex.quote(str(args.grammar))
    grammars = ", ".join(known_grammars(exc.path.parent)) or "none"
    return (
        f"{args.grammar!r} is a flow, not a grammar ({exc.path} has nodes, each listening with"
        f" its own grammar).\nTo hear the file as a node of the flow would, run:\n"
        f"  ivr grammar test {flow} --audio {audio} [--node NODE]\n"
        f"(default node: the first that listens). Grammars in {exc.path.parent}: {grammars}."
    )


def _cli_engine(args: argparse.Namespace, settings: Settings) -> Engine:
    """The configured engine; `--model` is the model of `--engine` (with neither, of Vosk,
    unless the directory holds a Whisper model)."""
    from ivr.asr.engines import load_engine
    from ivr.asr.models import is_whisper_model_dir

    kind = args.engine or settings.asr_engine
    vosk, whisper = settings.vosk_model, settings.whisper_model
    if args.model is not None:
        if kind == "whisper" or (kind == "auto" and is_whisper_model_dir(args.model)):
            kind, whisper = "whisper", args.model
        else:
            vosk = args.model
    return load_engine(kind, vosk, 0, whisper)


def cmd_say(args: argparse.Namespace) -> int:
    from ivr.audio.pcm import write_wav
    from ivr.tts import TtsEngine, TtsError

    settings = _settings(args)
    engine = TtsEngine()
    try:
        audio = engine.synthesize_blocking(
            args.text,
            voice=args.voice or settings.tts_voice,
            speed=args.speed or settings.tts_speed,
        )
    except TtsError as exc:
        raise SystemExit(f"ivr say: {exc}") from exc
    finally:
        engine.close()
    out = audio.to_rate(args.rate) if args.rate else audio
    write_wav(args.output, out)
    print(f"wrote {args.output}: {out.duration:.2f} s, {out.rate} Hz, mono 16-bit PCM WAV")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from ivr.asr.models import (
        WHISPER_MODELS,
        install_model,
        install_whisper_model,
        list_models,
    )

    settings = _settings(args)
    if args.action == "list":
        for name, repo in WHISPER_MODELS.items():
            print(f"{name}\t{'en' if name.endswith('.en') else 'multilingual'}\t{repo}")
        for entry in list_models():
            if str(entry.get("obsolete", "false")) != "true":
                print(f"{entry['name']}\t{entry.get('lang', '')}\t{entry.get('size_text', '')}")
        return 0
    data_dir = args.data_dir or settings.models_dir
    if args.name.startswith("faster-whisper-"):
        path = install_whisper_model(args.name, data_dir, force=args.force)
        variable = "IVR_WHISPER_MODEL"
    else:
        path = install_model(args.name, data_dir, force=args.force)
        variable = "IVR_VOSK_MODEL"
    print(f"installed {args.name} at {path}\nuse it with: {variable}={path} ivr serve")
    return 0


def cmd_dial(args: argparse.Namespace) -> int:
    import asyncio

    import aiohttp

    from ivr.dial import Caller

    turns = args.turns or []
    for turn in turns:
        if turn.wav is not None and not turn.wav.is_file():
            raise SystemExit(f"ivr dial: no such file: {turn.wav}")
    caller = Caller(
        args.url,
        turns,
        args.caller,
        barge_in_after=args.barge_in_after,
        record=args.record,
        max_seconds=args.max_seconds,
        token=args.token,
    )
    try:
        report = asyncio.run(caller.run())
    except aiohttp.WSServerHandshakeError as exc:
        refused = exc.status in (401, 403)
        hint = ": it needs --token (or IVR_TOKEN) with calls.read" if refused else ""
        raise SystemExit(f"ivr dial: the call's event feed answered {exc.status}{hint}") from exc
    except OSError as exc:
        raise SystemExit(f"ivr dial: cannot connect to {args.url}: {exc}") from exc
    return 0 if report.hangup is not None else 1


class _TurnAction(argparse.Action):
    """--wav and --dtmf append turns in the order given on the command line."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        from ivr.dial import CallerTurn

        turns = list(getattr(namespace, "turns", None) or [])
        if option_string == "--wav":
            turns.append(CallerTurn(wav=Path(str(values))))
        else:
            keys = str(values)
            if keys != "-" and not all(k in "0123456789*#ABCD" for k in keys):
                parser.error(f"--dtmf {keys!r}: keys are 0-9 * # A-D, or - for no input")
            turns.append(CallerTurn(dtmf=keys))
        namespace.turns = turns


def cmd_serve(args: argparse.Namespace) -> int:
    from ivr.app import StartupError, run

    overrides = {
        "host": args.host,
        "port": args.port,
        "audiosocket_port": args.audiosocket_port,
        "sip_port": args.sip_port,
        "data_dir": args.data_dir,
    }
    settings = load_settings(args.config, **overrides)
    # The settings name the log format: lines, or JSON objects (IVR_LOG_FORMAT).
    setup_logging(logging.DEBUG if args.verbose else logging.INFO, settings.log_format)
    try:
        run(settings)
    except StartupError as exc:  # everything it started has stopped: a supervisor restarts
        if settings.log_format == "json":  # every line on stderr a JSON record
            logging.getLogger("ivr.app").critical(
                "ivr serve: %s", exc, extra={"event": "startup_failed"}
            )
        else:
            print(f"ivr serve: {exc}", file=sys.stderr)
        return 2
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ivr", description="Voice IVR and speech service")
    parser.add_argument(
        "--version",
        action=VersionAction,
        help="print the version, Python and ASR engine (as the ivr_build_info metric) and exit",
    )
    common_options(parser, argparse.Namespace(config=None, verbose=False))
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_serve(sub)
    _add_dial(sub)
    _add_recognize(sub)
    _add_say(sub)
    _add_models(sub)
    add_token_parser(sub)  # ivr token new | list | revoke
    add_grammar_parser(sub)  # ivr grammar check | test | eval
    for p in parsers(parser):
        p.formatter_class = HelpFormatter
        if p is not parser and is_leaf(p):
            # Also after the subcommand (`ivr serve --config FILE`), the same meaning; not
            # given there, the value before it stands (SUPPRESS: no default overwrites it).
            common_options(p, None)
    return parser


def _add_serve(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="run the service")
    p.add_argument("--host", help="listen on this address (default: IVR_HOST, 0.0.0.0)")
    p.add_argument("--port", type=int, help="HTTP port (default: IVR_PORT, 8080)")
    p.add_argument(
        "--audiosocket-port",
        type=int,
        help="Asterisk AudioSocket TCP port (default: IVR_AUDIOSOCKET_PORT, 9092; 0: none)",
    )
    p.add_argument(
        "--sip-port",
        type=int,
        help="SIP on UDP and TCP (default: IVR_SIP_PORT, else 5060 when free; 0: no SIP)",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        help="database, recordings, caches (default: IVR_DATA_DIR, ~/.local/share/ivr)",
    )
    p.set_defaults(func=cmd_serve)


def _dial_epilog() -> str:
    from ivr.dial import EVENTS

    lines = ["It prints one JSON object a line, `event` naming it:"]
    lines += [f"  {name}: {text}" for name, text in EVENTS.items()]
    lines.append("Exit code 0 once the call hung up, 1 when no hangup came (--max-seconds).")
    return "\n".join(
        textwrap.fill(line, 92, subsequent_indent="      " if line.startswith("  ") else "")
        for line in lines
    )


def _add_dial(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "dial",
        help="simulate a caller over the WebSocket media stream",
        description="Call the service as a telephony provider would, answer each prompt with"
        " the next --wav or --dtmf turn, and print the call's events.",
        epilog=_dial_epilog(),
    )
    p.add_argument(
        "url", nargs="?", default="ws://127.0.0.1:8080/v1/media-stream", help="media stream URL"
    )
    p.add_argument(
        "--wav",
        action=_TurnAction,
        dest="turns",
        metavar="FILE",
        help="speak this WAV (a turn; default: no turns, hang up after the greeting)",
    )
    p.add_argument(
        "--dtmf",
        action=_TurnAction,
        dest="turns",
        metavar="KEYS",
        help="key these digits (a turn); - sends no input this turn (default: no turns)",
    )
    p.add_argument(
        "--from",
        dest="caller",
        help="caller number, e.g. +15551230001 (a demo account; default: none, unknown caller)",
    )
    p.add_argument(
        "--record",
        type=Path,
        metavar="FILE",
        help="write the call's audio (both sides) here (default: not)",
    )
    p.add_argument(
        "--barge-in-after",
        type=float,
        metavar="SECONDS",
        help="speak this many seconds into a prompt (default: wait for the prompt's end)",
    )
    p.add_argument("--max-seconds", type=float, default=300.0, help="hang up after this long")
    p.add_argument(
        "--token",
        default=os.environ.get("IVR_TOKEN"),
        help="API token with calls.read, for the call's event feed (default: $IVR_TOKEN)",
    )
    p.set_defaults(func=cmd_dial)


def _add_recognize(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("recognize", help="recognize a WAV file; prints one JSON object")
    p.add_argument("audio", type=Path, help="a WAV file (8 or 16 kHz as is; others resampled)")
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--grammar",
        help="grammar name (in the grammar dir) or YAML file path (default: none, free text;"
        " for what a flow's node understands: ivr grammar test FLOW --audio FILE)",
    )
    g.add_argument(
        "--phrases",
        help='comma-separated phrases, each its own intent: "a,b,c" (default: none)',
    )
    p.add_argument(
        "--engine",
        choices=["whisper", "vosk", "pocketsphinx"],
        help="ASR engine (default: the configured one, IVR_ASR_ENGINE)",
    )
    p.add_argument(
        "--model",
        type=Path,
        help="model directory, Vosk or Whisper (default: the configured one)",
    )
    p.add_argument("--nbest", type=int, default=3, help="alternatives to report")
    p.set_defaults(func=cmd_recognize)


def _add_say(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("say", help="synthesize speech to a WAV file")
    p.add_argument("text", help="what to say")
    p.add_argument("-o", "--output", type=Path, required=True, help="WAV file to write")
    p.add_argument("--rate", type=int, help="output sample rate (default: the voice's own)")
    p.add_argument("--voice", help="espeak-ng voice (default: IVR_TTS_VOICE, else en-us)")
    p.add_argument("--speed", type=int, help="words per minute (default: IVR_TTS_SPEED, 160)")
    p.set_defaults(func=cmd_say)


def _add_models(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("models", help="official Vosk models and faster-whisper models")
    msub = p.add_subparsers(dest="action", required=True)
    pi = msub.add_parser("install", help="download, verify and unpack a model")
    pi.add_argument("name", help="a name `ivr models list` shows, e.g. faster-whisper-base")
    pi.add_argument("--data-dir", type=Path, help="where models go (default: DATA_DIR/models)")
    pi.add_argument("--force", action="store_true", help="replace an installed model")
    msub.add_parser("list", help="list the official models")
    p.set_defaults(func=cmd_models)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(logging.DEBUG if args.verbose else logging.INFO)  # escaped, capped lines
    try:
        return int(args.func(args))
    except (GrammarError, ModelError, ConfigError, FlowError) as exc:
        print(f"ivr {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

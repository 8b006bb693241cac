"""The `ivr` command line."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ivr.asr.base import Engine
from ivr.asr.models import ModelError
from ivr.config import ConfigError, Settings, load_settings
from ivr.dialog.flow import FlowError
from ivr.grammar import Grammar, GrammarError, from_phrases, load_grammar
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
        grammar = load_grammar(args.grammar, settings.grammar_dir)
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
    write_wav(args.output, audio.to_rate(args.rate) if args.rate else audio)
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


def cmd_token(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from ivr.api import hash_token, new_token, token_entry
    from ivr.config import ApiToken

    token = new_token()
    scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]
    if not scopes:
        raise SystemExit("ivr token new: --scopes: name at least one scope")
    try:  # the configuration's own rules for names and scopes
        ApiToken(name=args.name, sha256=hash_token(token), scopes=scopes)
    except ValidationError as exc:
        problems = "; ".join(f"{e['loc'][0]}: {e['msg']}" for e in exc.errors())
        raise SystemExit(f"ivr token new: {problems}") from None
    # The token itself is shown this once; the server keeps only the entry (its SHA-256).
    print(f"token: {token}")
    print(f"IVR_API_TOKENS entry: {token_entry(args.name, token, scopes)}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from ivr.app import StartupError, run

    overrides = {
        "host": args.host,
        "port": args.port,
        "audiosocket_port": args.audiosocket_port,
        "sip_port": args.sip_port,
        "data_dir": args.data_dir,
    }
    try:
        run(load_settings(args.config, **overrides))
    except StartupError as exc:  # everything it started has stopped: a supervisor restarts
        print(f"ivr serve: {exc}", file=sys.stderr)
        return 2
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ivr", description="Voice IVR and speech service")
    parser.add_argument("--config", type=Path, help="YAML configuration file")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_serve(sub)
    _add_dial(sub)
    _add_recognize(sub)
    _add_say(sub)
    _add_models(sub)
    _add_token(sub)
    add_grammar_parser(sub)  # ivr grammar check | test | eval
    return parser


def _add_serve(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="run the service")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--audiosocket-port", type=int)
    p.add_argument("--sip-port", type=int, help="SIP on UDP and TCP (default 5060; 0: no SIP)")
    p.add_argument("--data-dir", type=Path)
    p.set_defaults(func=cmd_serve)


def _add_dial(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("dial", help="simulate a caller over the WebSocket media stream")
    p.add_argument("url", nargs="?", default="ws://127.0.0.1:8080/v1/media-stream")
    p.add_argument("--wav", action=_TurnAction, dest="turns", help="speak this WAV (a turn)")
    p.add_argument(
        "--dtmf",
        action=_TurnAction,
        dest="turns",
        help="key these digits (a turn); - sends no input this turn",
    )
    p.add_argument("--from", dest="caller", help="caller number")
    p.add_argument("--record", type=Path, help="write the call's audio (both sides) here")
    p.add_argument(
        "--barge-in-after",
        type=float,
        help="speak this many seconds into a prompt instead of waiting for its end",
    )
    p.add_argument("--max-seconds", type=float, default=300.0)
    p.add_argument(
        "--token",
        default=os.environ.get("IVR_TOKEN"),
        help="API token with calls.read, for the call's event feed (default: $IVR_TOKEN)",
    )
    p.set_defaults(func=cmd_dial)


def _add_recognize(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("recognize", help="recognize a WAV file; prints one JSON object")
    p.add_argument("audio", type=Path)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--grammar", help="grammar name (in the grammar dir) or YAML file path")
    g.add_argument("--phrases", help='comma-separated phrases, each its own intent: "a,b,c"')
    p.add_argument("--engine", choices=["whisper", "vosk", "pocketsphinx"])
    p.add_argument("--model", type=Path, help="model directory (Vosk, or Whisper)")
    p.add_argument("--nbest", type=int, default=3, help="alternatives to report")
    p.set_defaults(func=cmd_recognize)


def _add_say(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("say", help="synthesize speech to a WAV file")
    p.add_argument("text")
    p.add_argument("-o", "--output", type=Path, required=True)
    p.add_argument("--rate", type=int, help="output sample rate (default: the voice's own)")
    p.add_argument("--voice")
    p.add_argument("--speed", type=int, help="words per minute")
    p.set_defaults(func=cmd_say)


def _add_models(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("models", help="official Vosk models and faster-whisper models")
    msub = p.add_subparsers(dest="action", required=True)
    pi = msub.add_parser("install", help="download, verify and unpack a model")
    pi.add_argument("name")
    pi.add_argument("--data-dir", type=Path, help="where models go (default: DATA_DIR/models)")
    pi.add_argument("--force", action="store_true")
    msub.add_parser("list", help="list the official models")
    p.set_defaults(func=cmd_models)


def _add_token(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("token", help="API bearer tokens")
    tsub = p.add_subparsers(dest="action", required=True)
    pt = tsub.add_parser("new", help="make a token; prints it once and its IVR_API_TOKENS entry")
    pt.add_argument("name", help="who uses it (the acting agent name by default)")
    pt.add_argument(
        "--scopes",
        required=True,
        help="comma-separated: calls.read, callbacks.read, callbacks.write, or *",
    )
    p.set_defaults(func=cmd_token)


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

"""``ivr grammar check | test | eval``: grammar tuning from the command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from ivr.asr.base import Engine
from ivr.asr.engines import engine_from_settings
from ivr.asr.runner import AsrRunner
from ivr.audio.pcm import read_wav
from ivr.config import Settings, load_settings
from ivr.tuning.check import check_file, yaml_files
from ivr.tuning.evaluate import Report, SetError, read_set, run
from ivr.tuning.probe import Target, TargetError, Verdict, hear, judge, resolve


def engine_for(settings: Settings, processes: int = 0) -> Engine:
    """The engine the server would use, without its start-up notice about the built-in one."""
    return engine_from_settings(settings, processes, notice=False)


def cmd_check(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    engine = None if args.no_asr else engine_for(settings)
    paths = args.paths or [_shown(settings.grammar_dir)]
    reports = [check_file(path, engine) for path in yaml_files(paths)]
    if not reports:
        where = ", ".join(map(str, paths))
        print(f"ivr grammar check: no *.yaml files in {where}", file=sys.stderr)
        return 1
    bad = [r for r in reports if not r.ok]
    if args.json:
        files = [
            {
                "file": r.file,
                "kind": r.kind,
                "ok": r.ok,
                "summary": r.summary,
                "problems": [p.json() for p in r.problems],
                "warnings": [w.json() for w in r.warnings],
            }
            for r in reports
        ]
        print(json.dumps({"ok": not bad, "files": files}, indent=2, ensure_ascii=False))
    else:
        for report in reports:
            print("\n".join(report.lines()))
        if bad:
            count = sum(len(r.problems) for r in bad)
            print(f"{count} problem(s) in {len(bad)} of {len(reports)} file(s)", file=sys.stderr)
    return 1 if bad else 0


def _shown(path: Path) -> Path:
    """`path` relative to the working directory when it is inside it (shorter messages)."""
    try:
        return path.resolve().relative_to(Path.cwd())
    except ValueError:
        return path


def cmd_test(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    if (args.utterance is None) == (args.audio is None):
        usage = 'give an utterance ("check my balance") or --audio FILE.wav, not both'
        print(f"ivr grammar test: {usage}", file=sys.stderr)
        return 2
    try:
        target = resolve(args.target, args.node, settings.grammar_dir)
        if args.audio is not None:
            verdict = asyncio.run(_hear(target, args.audio, engine_for(settings)))
        else:
            verdict = judge(target, args.utterance)
    except (TargetError, ValueError) as exc:
        print(f"ivr grammar test: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"target": target.name, **verdict.json()}, ensure_ascii=False))
    else:
        print(_describe(target, verdict, heard=args.audio is not None))
    return 0


async def _hear(target: Target, wav: Path, engine: Engine) -> Verdict:
    audio = read_wav(wav)
    asr = AsrRunner(engine, workers=1, queue=1)
    try:
        result = await hear(asr, target, audio)
    finally:
        asr.close()
    return judge(target, result.text, result.confidence)


def _describe(target: Target, v: Verdict, heard: bool) -> str:
    lines = [target.name]
    if heard:
        lines.append(f"heard:     {v.text!r} (confidence {v.confidence:.2f})")
    lines.append(f"intent:    {v.intent or 'none (no match)'}")
    phrase = f" (phrase {v.phrase!r})" if v.phrase is not None else ""
    lines.append(f"score:     {v.score:.2f}{phrase}")
    if v.runner_up is not None:
        lines.append(f"runner-up: {v.runner_up[0]} ({v.runner_up[1]:.2f})")
    lines.append(f"why:       {v.reason}")
    return "\n".join(lines)


def cmd_eval(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    try:
        target = resolve(args.target, args.node, settings.grammar_dir)
        rows = read_set(args.set)
        asr = None
        if any(row.audio is not None for row in rows):
            engine = engine_for(settings, processes=args.workers)
            asr = AsrRunner(engine, workers=max(1, args.workers), queue=len(rows))
        try:
            # each worker process busy, one more job queued for it
            in_flight = 2 * args.workers if args.workers else 1
            outcomes = asyncio.run(run(target, rows, asr, in_flight, not args.no_progress))
        finally:
            if asr is not None:
                asr.close()
    except (TargetError, SetError) as exc:
        print(f"ivr grammar eval: {exc}", file=sys.stderr)
        return 2
    report = Report(target, outcomes)
    if args.json:
        print(json.dumps(report.json(), indent=2, ensure_ascii=False))
    else:
        print(report.text(args.misses))
    if args.min_accuracy is not None and report.accuracy < args.min_accuracy:
        print(
            f"ivr grammar eval: accuracy {report.accuracy:.3f} is below {args.min_accuracy:g}",
            file=sys.stderr,
        )
        return 1
    return 0


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text}: give a fraction from 0 to 1")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text}: give 0 or more")
    return value


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `grammar` command and its subcommands."""
    p = sub.add_parser("grammar", help="grammar tuning: check files, test utterances, measure")
    gsub = p.add_subparsers(dest="action", required=True)
    target_help = "a grammar or flow: a name in the grammar dir (digits, hotline) or a path"
    node_help = "for a flow: the node that listens (default: the first one after the start)"
    json_help = "one JSON document instead of text"

    pc = gsub.add_parser("check", help="validate flow and grammar files; problems by line")
    pc.add_argument("paths", nargs="*", type=Path, help="files or folders (default: grammar dir)")
    pc.add_argument("--no-asr", action="store_true", help="skip the ASR vocabulary check")
    pc.add_argument("--json", action="store_true", help=json_help)
    pc.set_defaults(func=cmd_check)

    pt = gsub.add_parser("test", help="what an utterance (text or a WAV file) means")
    pt.add_argument("target", help=target_help)
    pt.add_argument(
        "utterance", nargs="?", help="what the caller says (default: none; then give --audio)"
    )
    pt.add_argument(
        "--audio",
        type=Path,
        help="a WAV file: recognized first, as in a call (default: none; give an utterance)",
    )
    pt.add_argument("--node", help=node_help)
    pt.add_argument("--json", action="store_true", help=json_help)
    pt.set_defaults(func=cmd_test)

    pe = gsub.add_parser("eval", help="accuracy on a labelled set (CSV: input,expected)")
    pe.add_argument("target", help=target_help)
    pe.add_argument("--set", type=Path, required=True, help="CSV file with input,expected")
    pe.add_argument("--node", help=node_help)
    pe.add_argument(
        "--workers",
        type=_count,
        default=0,
        help="decode in N worker processes (default 0: in this one, in order: reproducible)",
    )
    pe.add_argument(
        "--min-accuracy",
        type=_fraction,
        help="exit 1 when the accuracy is below this (0-1; default: none, exit 0)",
    )
    pe.add_argument("--misses", type=_count, default=10, help="worst misses to list")
    pe.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    pe.add_argument("--json", action="store_true", help=json_help)
    pe.set_defaults(func=cmd_eval)

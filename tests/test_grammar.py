"""Grammar files and matching recognized text to intents (no audio here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.grammar import GrammarError, from_phrases, load_grammar, normalize

GRAMMARS = Path(__file__).resolve().parent.parent / "grammars"


@pytest.fixture(scope="module")
def digits():  # type: ignore[no-untyped-def]
    return load_grammar("digits", GRAMMARS)


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("five", "5"),
        ("oh", "0"),
        ("zero", "0"),
        ("four one two", "412"),
        ("fives", "5"),
        ("Nine.", "9"),
        ("for", "4"),
    ],
)
def test_digits_match(digits, text: str, intent: str) -> None:  # type: ignore[no-untyped-def]
    assert digits.match(text).intent == intent


@pytest.mark.parametrize("text", ["hello", "[unk]", "", "what is my balance", "goodbye"])
def test_digits_no_match(digits, text: str) -> None:  # type: ignore[no-untyped-def]
    m = digits.match(text)
    assert m.intent is None
    assert m.reason


def test_low_confidence_is_no_match(digits) -> None:  # type: ignore[no-untyped-def]
    m = digits.match("five", confidence=0.1)
    assert m.intent is None and "confidence" in m.reason


def test_yesno_synonyms() -> None:
    g = load_grammar("yesno", GRAMMARS)
    assert g.match("yeah").intent == "yes"
    assert g.match("that's right").intent == "yes"
    assert g.match("nope").intent == "no"
    assert g.match("maybe later").intent is None


def test_match_reports_runner_up_and_phrase() -> None:
    g = from_phrases(["check balance", "data usage", "pay bill"])
    m = g.match("check my balance")
    assert m.intent == "check balance"
    assert m.phrase == "check balance"
    assert m.runner_up is not None and m.runner_up[0] != "check balance"
    assert m.score > m.runner_up[1]


def test_from_phrases_each_phrase_is_intent() -> None:
    g = from_phrases(["a b", " c ", ""])
    assert set(g.intents) == {"a b", "c"}
    with pytest.raises(GrammarError, match="--phrases"):
        from_phrases([" ", ""])


def test_normalize_keeps_unknown_marker() -> None:
    assert normalize("Yes, [UNK] please!") != normalize("yes please")
    assert normalize("  Hello,   WORLD ") == "hello world"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("name: x\nintents: [a, b\n", "not valid YAML"),
        ("- just a list\n", "expected a mapping"),
        ("name: x\n", "intents: must be a non-empty mapping"),
        ("name: x\nintents:\n  a: []\n", "intents.a: no phrases"),
        ("name: x\nintents:\n  a: [hi]\n  b: [hi]\n", "intents.b: phrase 'hi' already belongs"),
        ("name: x\nintents:\n  a: [hi]\nthreshold: 3\n", "threshold: must be a number"),
        ("name: x\nintents:\n  a: [hi]\ncolour: red\n", "unknown field"),
        ("name: x\nintents:\n  a: {b: c}\n", "intents.a: must be a list"),
        ("name: x\nintents:\n  a: [hi]\nsequence: {max: 0}\n", "sequence.max"),
    ],
)
def test_broken_grammar_files_name_file_and_field(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(GrammarError) as err:
        load_grammar(path, tmp_path)
    assert message in str(err.value)
    assert str(path) in str(err.value)


def test_unknown_grammar_name_lists_known(tmp_path: Path) -> None:
    with pytest.raises(GrammarError, match="known grammars: digits, yesno"):
        load_grammar("nosuch", GRAMMARS)

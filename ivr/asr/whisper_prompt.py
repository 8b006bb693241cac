"""What a Whisper decode is told: the glossary of likely phrases (its previous text) and,
at a number question, the only words it may write (see "Number questions" in `whisper_engine`)."""

from __future__ import annotations

from functools import lru_cache

from ivr.grammar import Grammar
from ivr.nlu.numbers import reader_words

GLOSSARY_PER_INTENT = 2  # phrases of each intent in the decoder's prompt (see `glossary`)
GLOSSARY_WORDS = 60


@lru_cache(maxsize=256)
def _glossary(phrases: tuple[tuple[str, ...], ...]) -> str:
    out: list[str] = []
    count = 0
    for group in phrases:
        for phrase in group[:GLOSSARY_PER_INTENT]:
            count += len(phrase.split())
            if count > GLOSSARY_WORDS:
                return " ".join(out)
            out.append(phrase[:1].upper() + phrase[1:] + ".")
    return " ".join(out)


def vocabulary(grammar: Grammar) -> tuple[str, ...]:
    """The words a decode for `grammar` may write: for a digit-string grammar (number
    questions), its own words (the digits and the flow's global phrases) and, in English, every
    word the number reader understands ("oh", "double", fillers); () for any other grammar,
    which is transcribed freely."""
    if grammar.sequence is None:
        return ()
    words = grammar.words()
    if grammar.language.lower().startswith("en"):
        words |= reader_words()
    return tuple(sorted(words))


def glossary(grammar: Grammar) -> str:
    """What the caller is likely to say here, as the previous text of the decode: the first
    phrases of each intent ("Balance. Check my balance. Data usage. Data. ..."). Whisper
    continues a prompt's vocabulary, so a short command it would mishear on its own ("My
    deal." for "my bill", "Talent." for "balance") comes out as the phrase; speech that is
    none of them is still transcribed as said."""
    if grammar.sequence is not None or grammar.yes_no:  # measured: worse digits, no gain
        return ""
    by_intent: dict[str, list[str]] = {}
    for phrase in grammar.phrases:
        by_intent.setdefault(grammar.intent_of(phrase), []).append(phrase)
    return _glossary(tuple(tuple(g) for g in by_intent.values()))

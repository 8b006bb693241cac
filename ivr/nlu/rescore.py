"""N-best rescoring: which of a recognizer's hypotheses to hand to the dialog.

Whisper's beam keeps a few hypotheses, and on the flite voices the right words are often the
second or third ("My voice may listen working." / "My voicemail isn't working.", "How much is
my good this month?" / "How much is my bill this month?"). Each of the top `TOP` is scored by
the grammar's classifier; the best hypothesis stays unless another one

* is a clear match: its intent scores at least `ALT_MIN` and beats the nearest out-of-scope
  example and its own runner-up by `ALT_MARGIN` (an answer the dialog would not have to ask
  about), and
* beats what the best hypothesis claims — its best intent or, when that is out of scope, its
  nearest out-of-scope example — by `GAP`, after `LOGPROB_WEIGHT` times the log of the two
  hypotheses' recognizer confidences (a far less likely hypothesis needs a better match).

Calibrated on the tune split of eval/hotline (held-out never looked at while tuning): at the
main menu, in-scope clips clean 104 → 106 of 120, with pink noise at 15 dB 85 → 93; the
out-of-scope clips lost one each ("hmm" heard second as "Agent them." / "Agent then."). The
flow's "hmm" negative wins the clean one back, not the noisy one. Held out (never tuned on):
in-scope clean 147 -> 153 of 182, noise 128 -> 134, with the flow's new examples; out of
scope 57 -> 56 of 61 in both.

Cost: the alternatives' sentence embeddings, ~28 ms of CPU per utterance at the main menu
(the best hypothesis's is computed anyway, and cached); none when the best is a sure match.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ivr.nlu.classifier import IntentClassifier, words

TOP = 3  # hypotheses scored
ALT_MIN = 0.5  # an alternative's intent score needed
ALT_MARGIN = 0.05  # over its own runner-up and its nearest out-of-scope example
GAP = 0.05  # over what the best hypothesis claims
LOGPROB_WEIGHT = 0.3  # per unit of log confidence ratio
SURE = 0.8  # the best hypothesis claims this much: the others are not scored (no change on tune)


def _claim(clf: IntentClassifier, text: str) -> tuple[float, float]:
    """(how strongly `text` claims its best intent — 0 when that is no clear answer —, the
    most it claims anything: its best intent or its nearest out-of-scope example)."""
    said = " ".join(words(text))
    ranked = clf.rank(said)
    if not ranked:
        return 0.0, 0.0
    oos = clf.out_of_scope(said)
    other = max(oos.score if oos is not None else 0.0, ranked[1].score if len(ranked) > 1 else 0.0)
    top = ranked[0].score
    clear = top >= max(ALT_MIN, clf.reject) and top - other >= ALT_MARGIN
    return (top if clear else 0.0), max(top, oos.score if oos is not None else 0.0)


def choose(clf: IntentClassifier, hypotheses: Sequence[tuple[str, float]]) -> int:
    """The index of the hypothesis (text, recognizer confidence) to use, best first."""
    if len(hypotheses) < 2:
        return 0
    first_conf = max(hypotheses[0][1], 1e-6)
    _, base = _claim(clf, hypotheses[0][0])
    if base >= SURE:
        return 0
    chosen, value = 0, base + GAP
    for i, (text, conf) in enumerate(hypotheses[1:TOP], 1):
        clear, _ = _claim(clf, text)
        if not clear:
            continue
        v = clear + LOGPROB_WEIGHT * math.log(max(conf, 1e-6) / first_conf)
        if v > value:
            chosen, value = i, v
    return chosen

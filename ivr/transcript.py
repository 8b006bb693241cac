"""The kinds of turn in a call's transcript: what the dialog records (`ivr.dialog.types.Turn`),
the store keeps (`ivr.store.TurnRecord`) and the API lists, named once."""

from __future__ import annotations

from typing import Literal, get_args

TurnKind = Literal["prompt", "recognized", "dtmf", "no_input", "no_match"]
TURN_KINDS: tuple[TurnKind, ...] = get_args(TurnKind)

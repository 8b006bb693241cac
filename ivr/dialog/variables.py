"""The call variables the dialog engine sets itself: the one list of their names.

The engine keeps them from call parameters and fetch results, the flow checks let prompts use
them, and whoever stores a call's variables can tell the engine's working values from the
caller's data with `is_internal`.
"""

from __future__ import annotations

from ivr.dialog.schema import CallbackNode, FlowSpec, QuestionNode

ENGINE_VARIABLES = frozenset(
    {
        "caller",  # the validated caller ID, at the start
        "caller_spoken",  # its read-back
        "open_now",  # "yes" / "no": agents are in (business hours), at the start
        "business_hours",  # the hours, as said
        "closed_today",  # why agents are out all day (a holiday's name, a closure's), if so
        "queue",  # the agents' queue the call is for, once a node names one
        "handoff_reason",  # on the way to an agent (a choice's or global's reason, no_match_max)
        "callback_reason",  # the reason a callback is booked with
        "callback_id",  # the booked callback's id
        "transfer_error",  # why a live transfer to an agent failed
    }
)
"""Only the engine sets these, and every ``*_spoken`` (its read-backs): never call parameters
or fetch results."""

INTERNAL_VARIABLES = ENGINE_VARIABLES - {"caller", "callback_id", "queue"}
"""Of those, what the engine sets for its own prompts and branches rather than the caller's
data: not sent with fetches."""


def is_reserved(name: str) -> bool:
    """Whether only the engine may set `name` (`ENGINE_VARIABLES`, or a read-back)."""
    return name in ENGINE_VARIABLES or name.endswith("_spoken")


def is_internal(name: str) -> bool:
    """Whether `name` is the engine's working value (`INTERNAL_VARIABLES`, or a read-back)."""
    return name in INTERNAL_VARIABLES or name.endswith("_spoken")


def booking_variables(spec: FlowSpec) -> frozenset[str]:
    """What the flow's callback nodes book from: their number and time variables."""
    return frozenset(
        name
        for node in spec.nodes.values()
        if isinstance(node, CallbackNode)
        for name in [*node.number, node.when]
    )


def assigned_variables(spec: FlowSpec) -> frozenset[str]:
    """What the flow's own nodes set or book from: each question's answer, and
    `booking_variables`."""
    answers = {node.var for node in spec.nodes.values() if isinstance(node, QuestionNode)}
    return booking_variables(spec) | answers

"""Agent callbacks: booking, the agent/dialer workflow and dispatching, each state change
committed together with the webhook event that announces it."""

from ivr.callbacks.service import (
    FINAL_OUTCOMES,
    OUTCOMES,
    RETRY_OUTCOMES,
    AlreadyOpen,
    CallbackPolicy,
    Callbacks,
    InvalidNumber,
    call_json,
    callback_json,
    iso,
)

__all__ = [
    "FINAL_OUTCOMES",
    "OUTCOMES",
    "RETRY_OUTCOMES",
    "AlreadyOpen",
    "CallbackPolicy",
    "Callbacks",
    "InvalidNumber",
    "call_json",
    "callback_json",
    "iso",
]

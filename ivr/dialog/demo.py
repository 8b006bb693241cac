"""Demo fulfillment data: a few sample accounts for ``fetch: {source: demo}`` answer nodes.

Values are phrased for TTS ("23 dollars and 50 cents"), so prompts can say them directly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class DemoAccount:
    account: str  # account number digits
    caller: str  # E.164 number the account is registered to
    name: str
    plan: str
    balance: str
    data_used: str
    data_remaining: str
    bill_amount: str
    due_date: str
    segment: str = "standard"  # "vip" callers' callbacks come first

    def item(self, item: str) -> dict[str, str] | None:
        values = {
            "account": {},
            "balance": {"balance": self.balance},
            "data_usage": {"data_used": self.data_used, "data_remaining": self.data_remaining},
            "bill": {"bill_amount": self.bill_amount, "due_date": self.due_date},
            "plan": {"plan": self.plan},
        }.get(item)
        if values is None:
            return None
        return {"account": self.account, "account_name": self.name, **values}


DEMO_ACCOUNTS = (
    DemoAccount(
        "1234", "+15551230001", "Alex Smith", "Unlimited Talk with 10 gigabytes",
        "23 dollars and 50 cents", "3.2 gigabytes", "6.8 gigabytes",
        "45 dollars", "June 15th",
    ),
    DemoAccount(
        "5678", "+15551230002", "Sam Lee", "Basic with 2 gigabytes",
        "4 dollars and 10 cents", "1.9 gigabytes", "100 megabytes",
        "19 dollars and 99 cents", "June 20th",
    ),
    DemoAccount(
        "90210", "+15551230003", "Maria Garcia", "Family with 50 gigabytes",
        "0 dollars", "12 gigabytes", "38 gigabytes",
        "89 dollars", "July 1st", "vip",
    ),
)  # fmt: skip

ITEMS = ("account", "balance", "data_usage", "bill", "plan")


class DemoProvider:
    """Looks accounts up by the ``account`` call variable, else by ``caller``."""

    def __init__(self, accounts: Iterable[DemoAccount] = DEMO_ACCOUNTS) -> None:
        self.accounts = list(accounts)
        self._by_account = {a.account: a for a in self.accounts}
        self._by_caller = {a.caller: a for a in self.accounts}

    def find(self, variables: Mapping[str, str]) -> DemoAccount | None:
        account = "".join(variables.get("account", "").split())
        if account:
            return self._by_account.get(account)
        caller = "".join(variables.get("caller", "").split())
        return self._by_caller.get(caller)

    def lookup(self, item: str, variables: Mapping[str, str]) -> dict[str, str] | None:
        """Values for `item` (``balance``, ``data_usage``, ``bill``, ``plan``, ``account``),
        or None when no account matches (the pipeline answers FetchDone(error="not_found")).
        An unknown item is a ValueError (a flow bug: answer FetchDone(error=str(exc)))."""
        if item not in ITEMS:
            raise ValueError(f"demo provider: unknown item {item!r} (known: {', '.join(ITEMS)})")
        account = self.find(variables)
        return account.item(item) if account is not None else None


_DEFAULT = DemoProvider()


def lookup(item: str, variables: Mapping[str, str]) -> dict[str, str] | None:
    """`DemoProvider.lookup` on the bundled sample accounts."""
    return _DEFAULT.lookup(item, variables)

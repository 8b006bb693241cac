"""Days the agents are out though the weekly hours say they work: a country's public holidays
(the `holidays` package, by country and subdivision) and dated closures from the config.

Pure: a date in, the reason it is closed (or None) out. `BusinessHours` asks it for each day
it would open, so "is anyone in?" and the callback times it proposes skip those days.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

import holidays as holiday_data

CLOSURE_NAME = "a company closure"  # spoken: "Our team is out today for a company closure"
MAX_CLOSURE_DAYS = 366
_CLOSURE = re.compile(
    r"(?P<first>\d{4}-\d{2}-\d{2})(?:\s*(?:/|\.\.)\s*(?P<last>\d{4}-\d{2}-\d{2}))?"
    r"(?:\s+(?P<name>\S.*))?"
)


class ClosedError(ValueError):
    """A holiday country, subdivision or closure that cannot be used; the message says why."""


@dataclass(frozen=True)
class Closure:
    """Closed from `first` to `last`, both included; `name` is said to callers."""

    first: date
    last: date
    name: str = CLOSURE_NAME

    @classmethod
    def parse(cls, text: str) -> Closure:
        """`2026-12-24`, a range `2026-12-27/2027-01-01` (or `..`), either with a name after
        it: `2026-12-24 the staff party`."""
        m = _CLOSURE.fullmatch(text.strip())
        where = f"closure {text.strip()!r}"
        if m is None:
            raise ClosedError(f"{where}: expected YYYY-MM-DD or YYYY-MM-DD/YYYY-MM-DD, then a name")
        try:
            first = date.fromisoformat(m["first"])
            last = date.fromisoformat(m["last"]) if m["last"] else first
        except ValueError as exc:
            raise ClosedError(f"{where}: {exc}") from None
        if last < first:
            raise ClosedError(f"{where}: ends before it starts")
        if (last - first).days >= MAX_CLOSURE_DAYS:
            raise ClosedError(f"{where}: longer than a year")
        return cls(first, last, m["name"].strip() if m["name"] else CLOSURE_NAME)

    def __str__(self) -> str:
        span = str(self.first) if self.first == self.last else f"{self.first}/{self.last}"
        return span if self.name == CLOSURE_NAME else f"{span} {self.name}"


@dataclass(frozen=True)
class ClosedDays:
    """Public holidays of `country` (ISO 3166-1, e.g. US) and `subdivision` (e.g. CA), with
    their observed days, and `closures`. Holiday names are English where the package has
    them in English (they are spoken), else the country's own."""

    country: str | None = None
    subdivision: str | None = None
    closures: tuple[Closure, ...] = ()
    _holidays: holiday_data.HolidayBase | None = field(
        default=None, init=False, compare=False, repr=False
    )

    def __post_init__(self) -> None:
        if self.subdivision and not self.country:
            raise ClosedError(f"holiday subdivision {self.subdivision!r} without a country")
        if self.country:
            object.__setattr__(self, "_holidays", _country(self.country, self.subdivision))

    @classmethod
    def parse(
        cls, country: str | None, subdivision: str | None, closures: Iterable[str] = ()
    ) -> ClosedDays:
        return cls(
            country.strip().upper() if country and country.strip() else None,
            subdivision.strip().upper() if subdivision and subdivision.strip() else None,
            tuple(Closure.parse(c) for c in closures),
        )

    def __bool__(self) -> bool:
        return bool(self.country or self.closures)

    def reason(self, day: date) -> str | None:
        """Why `day` is closed: the holiday's name, the closure's; None when it is not."""
        for closure in self.closures:
            if closure.first <= day <= closure.last:
                return closure.name
        if self._holidays is not None:
            name = self._holidays.get(day)
            if name:
                return " and ".join(part.strip() for part in str(name).split(";"))
        return None

    def span(self) -> int:
        """Days the closures cover (an upper bound of the closed days in a row they make)."""
        return sum((c.last - c.first).days + 1 for c in self.closures)

    def describe(self) -> str:
        """Spoken after the weekly hours: "except public holidays", or ""."""
        return "except public holidays" if self.country else ""


NO_CLOSURES = ClosedDays()


def _country(country: str, subdivision: str | None) -> holiday_data.HolidayBase:
    try:
        national = holiday_data.country_holidays(country)
    except NotImplementedError:  # the package's word for a country it does not have
        raise ClosedError(
            f"no public holidays known for {country!r}: a country code of ISO 3166-1 such"
            " as US, GB or DE"
        ) from None
    language = "en_US" if "en_US" in getattr(national, "supported_languages", ()) else None
    try:
        return holiday_data.country_holidays(country, subdiv=subdivision, language=language)
    except NotImplementedError:
        known = ", ".join(getattr(national, "subdivisions", ()))
        raise ClosedError(
            f"{country} has no subdivision {subdivision!r} for public holidays (it has: {known})"
        ) from None

"""Telephone numbers in E.164 at every edge (ivr/callerid.py): caller IDs (in the call session,
whatever the transport), the numbers a call books, the VIP list and the API's (tests/test_api.py
has the API's body and filters; tests/test_e2e_phone_numbers.py a real server)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr.callbacks import CallbackPolicy, Callbacks, InvalidNumber
from ivr.callbacks.service import VIP_PRIORITY, AlreadyOpen
from ivr.callerid import WITHHELD, caller_number, check_region
from ivr.config import ConfigError, load_settings
from ivr.store import Store

T0 = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)
ONE = "+15551230001"
SPELLINGS = [ONE, "15551230001", "(555) 123-0001", "555-123-0001", "555.123.0001", "+1 555 1230001"]


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_every_spelling_of_a_us_number_is_one_number(spelling: str) -> None:
    assert caller_number(spelling, "US") == ONE


@pytest.mark.parametrize(
    ("raw", "region", "number"),
    [
        ("030 1234567", "DE", "+49301234567"),  # the trunk prefix 0 of Germany
        ("+49 30 1234567", "US", "+49301234567"),  # a + number is nobody's national one
        ("011 49 30 100", "US", "+4930100"),  # the US international prefix
        ("00 49 30 100", "DE", "+4930100"),  # Germany's
        ("020 7946 0000", "GB", "+442079460000"),
        ("5551230001", "GB", "+445551230001"),  # ten digits are a possible GB number
        # Not E.164-able, kept as given as before (a PBX's extension, a short code, a local
        # number without its area code, a + number too short for its country)
        ("100", "US", "100"),
        ("1001", "US", "1001"),
        ("5551234", "US", "5551234"),
        ("+15550100", "US", "+15550100"),
        ("+1555", "US", "+1555"),
        # No number at all: anonymous as before (None), never read back or booked
        ("anonymous", "US", None),
        ("alice", "US", None),  # a SIP user name
        ("client:alice", "US", None),
        ("12", "US", None),
        ("", "US", None),
        (None, "US", None),
    ],
)
def test_numbers_by_region(raw: str | None, region: str, number: str | None) -> None:
    assert caller_number(raw, region) == number


def test_without_a_region_only_a_plus_number_becomes_e164() -> None:
    """What a transport sees (it knows no region): the call session reads the rest."""
    assert caller_number("+1 (555) 123-0001") == ONE
    assert caller_number("(555) 123-0001") == "5551230001"
    assert caller_number(caller_number("(555) 123-0001"), "US") == ONE


@pytest.mark.parametrize("withheld", sorted(WITHHELD))
def test_withheld_placeholders_stay_anonymous_in_every_region(withheld: str) -> None:
    assert caller_number(withheld, "US") is None and caller_number(withheld, "RU") is None


NUMBERISH = st.text(st.sampled_from("0123456789+ -.()"), max_size=24)
REGIONS = st.sampled_from(["US", "GB", "DE", "FR", "IN", "JP", "BR", "CN", None])


@given(NUMBERISH, REGIONS)
def test_normalizing_is_idempotent_and_stays_a_number(raw: str, region: str | None) -> None:
    number = caller_number(raw, region)
    if number is not None:
        assert re.fullmatch(r"\+?[0-9]{3,15}", number), number
        assert caller_number(number, region) == number  # kept: stored, compared, filtered


@given(st.from_regex(r"[2-9][0-9]{2}[2-9][0-9]{6}", fullmatch=True))
def test_the_spellings_of_any_nanp_number_agree(ten: str) -> None:
    area, exchange, line = ten[:3], ten[3:6], ten[6:]
    forms = [f"+1{ten}", f"1{ten}", ten, f"({area}) {exchange}-{line}", f"{area}.{exchange}.{line}"]
    assert {caller_number(f, "US") for f in forms} == {f"+1{ten}"}


def test_the_region_setting() -> None:
    assert check_region(" gb ") == "GB"
    assert load_settings(default_region="de").default_region == "DE"
    with pytest.raises(ConfigError, match="default_region: unknown region 'XX'"):
        load_settings(default_region="XX")


def test_the_vip_list_is_kept_in_e164_and_matches_any_spelling() -> None:
    settings = load_settings(vip_numbers="(555) 123-0003, +44 20 7946 0000", default_region="US")
    assert settings.vip_numbers == ["+15551230003", "+442079460000"]
    policy = CallbackPolicy.from_settings(settings)
    assert policy.priority("+15551230003") == policy.priority("5551230003") == VIP_PRIORITY
    assert policy.priority(ONE) == 0
    # a policy made in code takes its list in any spelling too
    direct = CallbackPolicy(tz=ZoneInfo("UTC"), vip_numbers=frozenset({"15551230003"}))
    assert direct.vip_numbers == {"+15551230003"}
    with pytest.raises(ConfigError, match="vip_numbers: 'the boss' is not a telephone number"):
        load_settings(vip_numbers="the boss")


async def test_each_spelling_books_the_one_open_callback(store: Store) -> None:
    callbacks = Callbacks(store, CallbackPolicy(tz=ZoneInfo("UTC")))
    first, created = await callbacks.book("(555) 123-0001", T0, reason="keyed")
    assert created and first.number == ONE
    for spelling in SPELLINGS:
        again, created = await callbacks.book(spelling, T0, reason="again")
        assert not created and again.id == first.id
        with pytest.raises(AlreadyOpen):
            await callbacks.book(spelling, T0, reason="crm", only_new=True)
    items, _ = await store.list_callbacks(number=ONE)
    assert [cb.id for cb in items] == [first.id]
    with pytest.raises(InvalidNumber):
        await callbacks.book("call me", T0, reason="x")


async def test_national_numbers_are_the_configured_regions(store: Store) -> None:
    callbacks = Callbacks(store, CallbackPolicy(tz=ZoneInfo("Europe/Berlin"), region="DE"))
    cb, _ = await callbacks.book("030 1234567", T0, reason="r")
    assert cb.number == "+49301234567"
    same, created = await callbacks.book("+49 30 1234567", T0, reason="r")
    assert not created and same.id == cb.id

"""ClientLedger: one bounded table of per-client figures, one decay."""

from __future__ import annotations

import ipaddress

import pytest

from sidecar.admission.ledger import HALF_LIFE_S, ClientLedger, client_key


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_every_figure_decays_with_one_half_life() -> None:
    clock = Clock()
    ledger = ClientLedger(clock=clock)
    entry = ledger.touch("a")
    entry.used, entry.searches, entry.asked = 40.0, 8.0, 400.0
    clock.now += HALF_LIFE_S
    aged = ledger.peek("a")
    assert aged is not None
    assert (aged.used, aged.searches, aged.asked) == pytest.approx((20.0, 4.0, 200.0))


def test_the_table_is_bounded_and_faded_clients_go() -> None:
    clock = Clock()
    ledger = ClientLedger(max_clients=50, clock=clock)
    for n in range(80):
        ledger.touch(f"ip:10.0.0.{n}").used = 100.0
    assert len(ledger) == 50
    assert "ip:10.0.0.0" not in ledger, "the longest unseen was forgotten"
    clock.now += HALF_LIFE_S * 20  # every figure faded
    assert list(ledger.clients()) == []
    assert len(ledger) == 0


def test_others_are_seen_for_a_while() -> None:
    clock = Clock()
    ledger = ClientLedger(clock=clock)
    ledger.touch("a")
    assert not ledger.others_seen_within("a", 10.0), "alone"
    ledger.touch("b")
    assert ledger.others_seen_within("a", 10.0)
    clock.now += 10.5
    ledger.touch("a")
    assert not ledger.others_seen_within("a", 10.0), "b went quiet"


def test_an_ipv6_client_is_its_64() -> None:
    """A host with a /64 cannot take a fresh entry per address."""
    one = client_key(ipaddress.ip_address("2001:db8:1:2::5"))
    assert one == client_key(ipaddress.ip_address("2001:db8:1:2:ffff::9"))
    assert one == "ip:2001:db8:1:2::/64"
    assert client_key(ipaddress.ip_address("2001:db8:1:3::5")) != one
    assert client_key(ipaddress.ip_address("192.0.2.7")) == "ip:192.0.2.7"

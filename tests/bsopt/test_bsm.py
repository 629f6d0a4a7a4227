"""Black-Scholes-Merton against published values, parity, Greeks by finite differences,
implied volatility round trips (deep in/out of the money, near expiry), and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from bsopt.common.errors import InputError
from bsopt.pricing import bsm

pytestmark = pytest.mark.unit


# Hull, Options, Futures, and Other Derivatives (8th ed.): the worked examples' published values.
def test_hull_example_15_6_call_and_put():
    # S0 = 42, K = 40, r = 10 %, sigma = 20 %, T = 0.5: c = 4.76, p = 0.81
    assert bsm.price(42, 40, 0.5, 0.10, 0.20, 0.0, True) == pytest.approx(4.76, abs=0.005)
    assert bsm.price(42, 40, 0.5, 0.10, 0.20, 0.0, False) == pytest.approx(0.81, abs=0.005)


def test_hull_greeks_of_the_20_week_call():
    # Hull ch. 19: S0 = 49, K = 50, r = 5 %, sigma = 20 %, T = 20 weeks: price 2.40,
    # delta 0.522, gamma 0.066, vega 12.1, theta -4.31 (per year), rho 8.91
    g = bsm.greeks(49, 50, 20 / 52, 0.05, 0.20, 0.0, True)
    assert float(g.price) == pytest.approx(2.40, abs=0.005)
    assert float(g.delta) == pytest.approx(0.522, abs=0.0005)
    assert float(g.gamma) == pytest.approx(0.066, abs=0.0005)
    assert float(g.vega) == pytest.approx(12.1, abs=0.05)
    assert float(g.theta) == pytest.approx(-4.31, abs=0.005)
    assert float(g.rho) == pytest.approx(8.91, abs=0.005)


def test_hull_example_17_1_index_option_with_dividend_yield():
    # S0 = 930, K = 900, r = 8 %, q = 3 %, sigma = 20 %, T = 2 months: c = 51.83
    assert bsm.price(930, 900, 2 / 12, 0.08, 0.20, 0.03, True) == pytest.approx(51.83, abs=0.005)


def test_hull_implied_volatility_example():
    # Hull 15.11: a call worth 1.875 with S0 = 21, K = 20, r = 10 %, T = 0.25 -> 23.5 %
    assert bsm.implied_vol(1.875, 21, 20, 0.25, 0.10, 0.0, True) == pytest.approx(0.235, abs=0.0005)


GRID = np.meshgrid(np.array([60.0, 90, 100, 110, 160]), np.array([1 / 365, 0.1, 1.0, 5.0]),
                   np.array([0.05, 0.2, 0.8]), np.array([-0.01, 0.0, 0.07]), np.array([0.0, 0.03]),
                   indexing="ij")
K, T, SIG, R, Q = (a.ravel() for a in GRID)
S = 100.0


def test_put_call_parity_over_a_grid():
    c = bsm.price(S, K, T, R, SIG, Q, True)
    p = bsm.price(S, K, T, R, SIG, Q, False)
    np.testing.assert_allclose(c - p, S * np.exp(-Q * T) - K * np.exp(-R * T), rtol=0, atol=1e-10)


@pytest.mark.parametrize("call", [True, False])
def test_greeks_match_finite_differences(call):
    g = bsm.greeks(S, K, T, R, SIG, Q, call)
    # steps scaled to the option: near expiry delta turns within a fraction of sigma sqrt(T)
    hs = 1e-3 * S * SIG * np.sqrt(T)
    hv, ht, hr = 1e-5, 1e-3 * T, 1e-6
    f = lambda s=S, t=T, r=R, sig=SIG: bsm.price(s, K, t, r, sig, Q, call)  # noqa: E731
    fd_delta = (f(s=S + hs) - f(s=S - hs)) / (2 * hs)
    fd_gamma = (f(s=S + hs) - 2 * f() + f(s=S - hs)) / hs**2
    fd_vega = (f(sig=SIG + hv) - f(sig=SIG - hv)) / (2 * hv)
    fd_theta = -(f(t=T + ht) - f(t=T - ht)) / (2 * ht)   # theta is -dV/dT
    fd_rho = (f(r=R + hr) - f(r=R - hr)) / (2 * hr)
    for name, fd, atol in (("delta", fd_delta, 1e-6), ("gamma", fd_gamma, 2e-4), ("vega", fd_vega, 1e-4),
                           ("theta", fd_theta, 2e-3), ("rho", fd_rho, 1e-4)):
        np.testing.assert_allclose(getattr(g, name), fd, rtol=1e-4, atol=atol, err_msg=name)


@pytest.mark.parametrize("call", [True, False])
def test_implied_volatility_round_trips_deep_itm_otm_and_near_expiry(call):
    k = np.array([40.0, 60, 80, 100, 125, 150, 250, 95, 100, 105, 100, 70, 110])
    t = np.array([1.0, 1, 1, 1, 1, 1, 1, 2 / 365, 1 / 365, 2 / 365, 1 / 365 / 24, 0.5, 0.5])
    sig = np.array([0.3, 0.25, 0.2, 0.2, 0.35, 0.5, 0.9, 0.25, 0.15, 0.3, 0.2, 1.5, 0.05])
    target = bsm.price(S, k, t, 0.04, sig, 0.01, call)
    got = bsm.implied_vol(target, S, k, t, 0.04, 0.01, call)
    assert not np.isnan(got).any(), (k[np.isnan(got)], t[np.isnan(got)])
    np.testing.assert_allclose(got, sig, rtol=0, atol=1e-6)
    np.testing.assert_allclose(bsm.price(S, k, t, 0.04, got, 0.01, call), target, rtol=1e-12, atol=1e-12)


def test_implied_volatility_batch_of_10000():
    rng = np.random.default_rng(7)
    s = rng.uniform(50, 150, 10_000)
    sig = rng.uniform(0.05, 1.0, 10_000)
    t = rng.uniform(0.02, 3, 10_000)
    call = rng.uniform(size=10_000) < 0.5
    target = bsm.price(s, 100.0, t, 0.03, sig, 0.0, call)
    got = bsm.implied_vol(target, s, 100.0, t, 0.03, 0.0, call)
    ok = ~np.isnan(got)
    assert ok.mean() > 0.99   # the rest: prices equal to the intrinsic value in double precision
    # where the price still moves with volatility, the volatility comes back; where it hardly
    # does (vega ~ 0, far from the money), whatever comes back reproduces the price
    vega = bsm.greeks(s, 100.0, t, 0.03, sig, 0.0, call).vega
    ident = ok & (vega > 1e-3)
    assert ident.mean() > 0.97
    np.testing.assert_allclose(got[ident], sig[ident], atol=1e-6)
    np.testing.assert_allclose(bsm.price(s[ok], 100.0, t[ok], 0.03, got[ok], 0.0, call[ok]), target[ok],
                               rtol=1e-10, atol=1e-10)


def test_price_no_volatility_reproduces_is_an_input_error_with_the_range():
    # a call below its discounted intrinsic value (S e^-qT - K e^-rT ~ 20.4) and one above the spot
    with pytest.raises(InputError) as info:
        bsm.implied_vol_checked([15.0, 120.0], 100, 80, 1.0, 0.03, 0.0, True)
    probs = info.value.problems
    assert [p.field for p in probs] == ["price[0]", "price[1]"]
    assert "no volatility" in probs[0].reason and "between 22.36" in probs[0].accepted
    assert probs[1].got == 120.0


@pytest.mark.parametrize("field,value,bad_field", [
    ("volatility", -0.2, "volatility"), ("volatility", 0.0, "volatility"), ("years", -1.0, "years"),
    ("spot", [100.0, float("nan")], "spot[1]"), ("rate", 3.0, "rate"), ("strike", [1.0, -5.0, 3.0], "strike[1]"),
])
def test_check_names_the_field_the_reason_and_what_is_accepted(field, value, bad_field):
    fields = dict(spot=100.0, strike=100.0, years=1.0, rate=0.01, volatility=0.2, dividend_yield=0.0)
    fields[field] = value
    with pytest.raises(InputError) as info:
        bsm.check(**fields)
    (p,) = info.value.problems
    assert p.field == bad_field
    assert "out of range" in p.reason
    assert p.accepted == bsm.LIMITS[field][1]


def test_lists_of_different_lengths_are_refused():
    with pytest.raises(InputError) as info:
        bsm.check(spot=[100.0, 101.0], strike=[1.0, 2.0, 3.0], years=1.0, rate=0.0, volatility=0.2,
                  dividend_yield=0.0)
    assert info.value.problems[0].field == "batch"


def test_unknown_option_type():
    with pytest.raises(InputError) as info:
        bsm.is_call(["call", "straddle"])
    assert info.value.problems[0].field == "type[1]"


def test_single_option_path_equals_the_vectorised_one():
    for call in (True, False):
        vec = bsm.greeks(S, K, T, R, SIG, Q, call)
        for i in range(K.size):
            one = bsm.greeks_one(S, K[i], T[i], R[i], SIG[i], Q[i], call)
            for name, value in one.items():
                assert value == pytest.approx(float(getattr(vec, name)[i]), rel=1e-12, abs=1e-12), (name, i)


def test_single_option_check():
    bsm.check_one(spot=100.0, strike=90.0, years=1.0, rate=0.0, volatility=0.2, dividend_yield=0.0)
    with pytest.raises(InputError) as info:
        bsm.check_one(spot=100.0, strike=90.0, years=0.0, rate=0.0, volatility=float("inf"), dividend_yield=0.0)
    assert [p.field for p in info.value.problems] == ["years", "volatility"]

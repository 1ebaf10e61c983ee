#!/usr/bin/python3
"""Fake CoinDCX (public market data REST + socket.io candle stream) for mdfeed tests.

Run with Debian's /usr/bin/python3 (3.11) and python3-aiohttp (3.8); standard library + aiohttp only.
Self-contained: it shares no code with fake_binance.py and runs as its own process.

    fake_coindcx.py serve [--host 127.0.0.1] [--port 0] [--port-file F] [--seed 1] [--faults JSON]
                          [--config JSON] [--rate-limit 5000] [--ping-interval-ms 25000]
                          [--ping-timeout-ms 20000] [--ws-futures-interval-ms 500]
                          [--ws-spot-interval-ms 2000]
    fake_coindcx.py truth MARKET PAIR INTERVAL START_MS END_MS [--now MS]
    fake_coindcx.py pairs

One port serves what CoinDCX spreads over three hosts: public.coindcx.com (/market_data/...),
api.coindcx.com (/exchange/...) and stream.coindcx.com (/socket.io/).  Control endpoints live
under /_fake/ as on the Binance side.  FAKE_COINDCX_TODAY_MS (else FAKE_BINANCE_TODAY_MS), when
set, pins the day B-NEW_USDT's listing and B-OLD_USDT's delisting count from.

Every bar is a pure function of (market, pair, interval, open time); see the CoinDCX section of
PROTOCOL.md for what is modelled on the real exchange and what is the fake's choice.
"""

import argparse
import asyncio
import json
import math
import os
import random
import re
import secrets
import signal
import socket
import struct
import sys
import time

# --------------------------------------------------------------------------------------------
# Time / interval arithmetic (UTC; 1w starts on Monday, 1M on the 1st, 3d on epoch multiples)
# --------------------------------------------------------------------------------------------

# the calendar arithmetic, number formatting and body mutation are the
# Binance side's: one copy serves both fakes
from fake_binance import (  # noqa: E402
    DAY, HOUR, INTERVALS, IV_FIXED, _decimals, _hfloats, _units, ceil_open,
    days_from_civil, floor_open, mutate_body, next_open, prev_open)

# futures REST `resolution` -> interval.  Accepted and rejected values from live probes.
RESOLUTIONS = {"1": "1m", "5": "5m", "15": "15m", "30": "30m", "60": "1h", "240": "4h",
               "480": "8h", "1D": "1d", "D": "1d", "1M": "1M"}
# spot REST `interval` values the live endpoint accepts
SPOT_REST_IVS = ("1m", "15m", "1h", "1d")
# socket channel resolutions that deliver
FUTURES_WS_IVS = ("1m", "5m", "15m", "30m", "1h", "4h", "8h", "1d", "3d", "1w", "1M")
SPOT_WS_IVS = ("1m", "15m", "1h", "1d")


def today_start_ms():
    pinned = os.environ.get("FAKE_COINDCX_TODAY_MS") or os.environ.get("FAKE_BINANCE_TODAY_MS")
    t = int(pinned) if pinned else int(time.time() * 1000)
    return t - t % DAY


# --------------------------------------------------------------------------------------------
# Decimal and number text
# --------------------------------------------------------------------------------------------


def fmt(v, d):
    """Integer number of 10**-d units -> fixed-decimal string (trailing zeros kept)."""
    neg = v < 0
    v = -v if neg else v
    if d == 0:
        s = str(v)
    else:
        s = str(v)
        if len(s) <= d:
            s = "0" * (d + 1 - len(s)) + s
        s = s[:-d] + "." + s[-d:]
    return "-" + s if neg else s


def dec_text(v, d):
    """The exact decimal an exact-decimal client stores for the JSON number js_num(v, d) gives:
    PostgreSQL's numeric text of it (no exponent, no trailing zeros after the point)."""
    s = fmt(v, d)
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return "0" if s in ("", "-0") else s


def js_num(v, d):
    """JSON number text of v * 10**-d the way JavaScript's Number#toString writes it (the
    exchange is a Node service): shortest digits, no trailing zeros, and exponent form below
    1e-6 (3.1e-7, 4.123e-7) or from 1e21 up.  Exact for values with <= 15 significant digits."""
    if v == 0:
        return "0"
    neg = v < 0
    a = -v if neg else v
    digits = str(a).rstrip("0")
    # a = int(digits) * 10**(len(str(a)) - len(digits)) * 10**-d ; value = 0.digits * 10**n
    k = len(digits)
    n = len(str(a)) - d
    if k <= n <= 21:
        s = digits + "0" * (n - k)
    elif 0 < n <= 21:
        s = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        s = "0." + "0" * (-n) + digits
    else:
        e = n - 1
        s = digits[0] + ("." + digits[1:] if k > 1 else "") + ("e+%d" % e if e > 0 else "e-%d" % -e)
    return "-" + s if neg else s


def ruby_float(x):
    """A float written the way the documentation's instrument example writes numbers
    (10.0, 0.025, 1.0e-10): Ruby's Float#to_s."""
    s = repr(float(x))
    if "e" in s:
        m, _, e = s.partition("e")
        if "." not in m:
            m += ".0"
        sign = "-" if e.startswith("-") else "+"
        e = e.lstrip("+-").lstrip("0") or "0"
        return "%se%s%02d" % (m, sign, int(e))
    return s


# --------------------------------------------------------------------------------------------
# Markets and pairs
# --------------------------------------------------------------------------------------------

PERPETUAL_EXPIRY = 2548162800000  # what the documentation's instrument example carries


class Pair:
    """One market: a futures instrument or a spot market.  Prices are integers in units of
    10**-pp (pp = decimals of the tick), quantities in 10**-qp (qp = decimals of the step)."""

    def __init__(self, market, name, tick, step, price, npm, tsize, onboard, ws_pd=8,
                 status="active", end_ms=None, margins=("USDT",), names=None):
        self.market = market  # "futures" | "spot"
        self.name = name
        self.ecode, _, rest = name.partition("-")
        self.target, _, self.base = rest.partition("_")
        self.coindcx_name = self.target + self.base
        self.symbol = self.coindcx_name
        self.target_name, self.base_name = names or (self.target, self.base)
        if market == "spot" and self.ecode == "KC":
            self.symbol = "%s-%s" % (self.target, self.base)
        elif market == "spot" and self.ecode == "G":
            self.symbol = "%s_%s" % (self.target, self.base)
        self.tick, self.step = tick, step
        self.pp, self.qp = _decimals(tick), _decimals(step)
        self.qd = self.pp + self.qp
        self.tick_i = _units(tick, self.pp)
        self.step_i = _units(step, self.qp)
        self.tick_f, self.step_f = float(tick), float(step)
        self.price = price
        self.npm = npm  # quote notional per minute
        self.tsize = tsize  # typical trade notional
        self.onboard = onboard
        self.status = status
        self.end_ms = end_ms  # no bar opens at or after this
        self.margins = tuple(margins)
        # socket decimals: futures strings carry ws_pd price decimals (BTC "81006.80" with a
        # 0.1 tick, ID "0.3524000"), volume with qp, quote volume with ws_pd + qp; spot
        # strings carry 8 decimals throughout (Binance style "81078.58000000")
        if market == "futures":
            self.ws_pd = max(ws_pd, self.pp)
            self.ws_vd = self.qp
            self.ws_qd = self.ws_pd + self.qp
        else:
            self.ws_pd = self.ws_vd = self.ws_qd = 8
        self.key = "%s:%s" % (market, name)
        u = _hfloats("pair|" + self.key)
        self.ph = (u[4] * 6.283185307179586, u[5] * 6.283185307179586, u[6] * 6.283185307179586)
        self.amp = (0.18 + 0.15 * u[7], 0.05 + 0.05 * u[8], 0.01 + 0.02 * u[9])

    def price_ticks(self, t):
        a, b, c = self.amp
        p, q, r = self.ph
        x = (a * math.sin(t * 6.98131700797732e-11 + p)
             + b * math.sin(t * 1.03881299e-08 + q)
             + c * math.sin(t * 2.908882086657216e-07 + r))
        return self.price * math.exp(x) / self.tick_f

    def first_open(self, iv):
        return floor_open(iv, self.onboard)

    def last_open(self, iv):
        return None if self.end_ms is None else floor_open(iv, self.end_ms - 1)

    def has_bar(self, iv, o):
        if o < self.first_open(iv):
            return False
        last = self.last_open(iv)
        return last is None or o <= last

    def describe(self):
        return {"market": self.market, "pair": self.name, "symbol": self.symbol, "ecode": self.ecode,
                "status": self.status, "onboard_ms": self.onboard, "end_ms": self.end_ms,
                "tick": self.tick, "step": self.step, "margins": list(self.margins)
                if self.market == "futures" else None}


def build_pairs():
    """(futures pairs, spot pairs) -- the same universe for serve and truth."""
    today = today_start_ms()
    y2022 = days_from_civil(2022, 6, 1) * DAY
    F = "futures"
    futures = [
        Pair(F, "B-BTC_USDT", "0.1", "0.001", 80000.0, 3_000_000.0, 2500.0, y2022, ws_pd=2,
             margins=("USDT", "INR")),
        Pair(F, "B-ETH_USDT", "0.01", "0.001", 2500.0, 1_500_000.0, 1500.0, y2022, ws_pd=2,
             margins=("USDT", "INR")),
        Pair(F, "B-PEPE_USDT", "0.0000000001", "1", 4.0e-7, 200_000.0, 300.0,
             days_from_civil(2023, 5, 10) * DAY, ws_pd=10),
        Pair(F, "B-ID_USDT", "0.0001", "1", 0.35, 100_000.0, 200.0,
             days_from_civil(2023, 4, 1) * DAY, ws_pd=7),
        Pair(F, "B-NEW_USDT", "0.001", "0.1", 1.2, 50_000.0, 100.0, today - 10 * DAY + 8 * HOUR, ws_pd=4),
        Pair(F, "B-OLD_USDT", "0.001", "0.1", 3.0, 40_000.0, 100.0, days_from_civil(2023, 1, 1) * DAY,
             ws_pd=4, status="inactive", end_ms=today - 30 * DAY),
    ]
    S = "spot"
    spot = [
        Pair(S, "B-BTC_USDT", "0.01", "0.00001", 80000.0, 2_000_000.0, 800.0,
             days_from_civil(2019, 6, 1) * DAY, names=("Bitcoin", "Tether")),
        Pair(S, "B-ETH_USDT", "0.01", "0.0001", 2500.0, 800_000.0, 600.0,
             days_from_civil(2019, 6, 1) * DAY, names=("Ethereum", "Tether")),
        Pair(S, "B-BTTC_USDT", "0.00000001", "1", 5.0e-7, 60_000.0, 90.0,
             days_from_civil(2022, 1, 10) * DAY, names=("BitTorrent", "Tether")),
        Pair(S, "I-BTC_INR", "1", "0.0001", 7_000_000.0, 4_000_000.0, 20_000.0,
             days_from_civil(2018, 4, 1) * DAY, names=("Bitcoin", "Indian Rupee")),
        Pair(S, "I-ETH_INR", "0.1", "0.001", 220_000.0, 1_000_000.0, 8000.0,
             days_from_civil(2018, 4, 1) * DAY, names=("Ethereum", "Indian Rupee")),
        Pair(S, "KC-LYX_USDT", "0.0001", "0.0001", 1.3, 5_000.0, 40.0,
             days_from_civil(2023, 3, 1) * DAY, names=("LUKSO", "Tether")),
        Pair(S, "G-MLK_USDT", "0.00001", "0.01", 0.21, 2_000.0, 20.0,
             days_from_civil(2023, 3, 1) * DAY, names=("MiL.k", "Tether")),
    ]
    return futures, spot


# --------------------------------------------------------------------------------------------
# Deterministic bars
# --------------------------------------------------------------------------------------------

ZERO_IVS = ("1m", "3m", "5m")


def bar_close(iv, o):
    return next_open(iv, o) - 1


def gen_bar(P, iv, o):
    """Final ('truth') values of a bar, as integers:
    [open_ms, close_ms, O, H, L, C, v, q, n, th, tl, ph, vsteps, vw]
    O..C and vw in 10**-pp units, v in 10**-qp, q = v * vw in 10**-(pp+qp)."""
    c_ms = bar_close(iv, o)
    u = _hfloats("%s|%s|%d" % (P.key, iv, o))
    dmin = (c_ms + 1 - o) / 60000.0
    sig = min(0.0011 * math.sqrt(dmin), 0.12)
    p0 = P.price_ticks(o)
    ti = P.tick_i
    if iv in ZERO_IVS and u[5] < 0.004:
        X = max(1, int(round(p0))) * ti
        return [o, c_ms, X, X, X, X, 0, 0, 0, 0.5, 0.5, 0.0, 0, X]
    p1 = P.price_ticks(c_ms + 1)
    g1 = (u[0] + u[1] + u[2] - 1.5) * 2.0
    g2 = (u[1] + u[3] + u[4] - 1.5) * 2.0
    O = max(1, int(round(p0 * (1.0 + sig * 0.12 * g1))))
    C = max(1, int(round(p1 * (1.0 + sig * 0.45 * g2))))
    mx, mn = (O, C) if O >= C else (C, O)
    H = mx + int(mx * sig * 0.5 * u[6])
    L = max(1, mn - int(mn * sig * 0.5 * u[7]))
    O, H, L, C = O * ti, H * ti, L * ti, C * ti
    notional = P.npm * dmin * (0.25 + 1.5 * u[8])
    vsteps = max(1, int(notional / (O * 10.0 ** -P.pp * P.step_f)))
    n = max(1, min(vsteps, int(notional / P.tsize * (0.6 + 0.8 * u[9]))))
    vw = L + ((H - L) // ti * (25 + int(50 * u[10]))) // 100 * ti
    v = vsteps * P.step_i
    return [o, c_ms, O, H, L, C, v, v * vw, n, 0.05 + 0.9 * u[12], 0.05 + 0.9 * u[13], u[14],
            vsteps, vw]


def partial_bar(P, k, f):
    """The forming bar at elapsed fraction f of bar k: volume and trades grow with f, high only
    rises and low only falls towards the final values, close stays inside [low, high], the
    average price is the final one.  f >= 1 is the truth."""
    if f >= 1.0:
        return k
    o, c_ms, O, H, L, C, v, q, n, th, tl, ph, vsteps, vw = k
    f = max(f, 0.0)
    vs = int(vsteps * f)
    if vs <= 0 or n == 0:
        return [o, c_ms, O, O, O, O, 0, 0, 0, th, tl, ph, 0, vw]
    nf = max(1, min(vs, int(n * f)))
    ti = P.tick_i
    hf = O + int(((H - O) // ti) * min(1.0, f / th)) * ti
    lf = O - int(((O - L) // ti) * min(1.0, f / tl)) * ti
    hf = max(hf, vw)
    lf = min(lf, vw)
    target = O + (C - O) * f + (H - L) * 0.3 * math.sin(6.283185307179586 * (2.0 * f + ph))
    cf = int(round(target / ti)) * ti
    cf = hf if cf > hf else (lf if cf < lf else cf)
    vf = vs * P.step_i
    return [o, c_ms, O, hf, lf, cf, vf, vf * vw, nf, th, tl, ph, vs, vw]


def bar_at(P, iv, o, now):
    """(bar as the exchange shows it at instant now, closed?)"""
    k = gen_bar(P, iv, o)
    if now <= k[1]:
        return partial_bar(P, k, (now - o) / float(k[1] + 1 - o)), False
    return k, True


def bar_rest_json(P, k):
    """One REST row: JSON numbers, key order open, high, low, volume, close, time."""
    pp, qp = P.pp, P.qp
    return '{"open":%s,"high":%s,"low":%s,"volume":%s,"close":%s,"time":%d}' % (
        js_num(k[2], pp), js_num(k[3], pp), js_num(k[4], pp), js_num(k[6], qp), js_num(k[5], pp), k[0])


def ws_strings(P, k):
    """(o, h, l, c, v, q) as the socket writes them."""
    pd, vd, qd = P.ws_pd, P.ws_vd, P.ws_qd
    sp, sq = pd - P.pp, qd - P.qd
    m = 10 ** sp
    return (fmt(k[2] * m, pd), fmt(k[3] * m, pd), fmt(k[4] * m, pd), fmt(k[5] * m, pd),
            fmt(k[6] * 10 ** (vd - P.qp), vd), fmt(k[7] * 10 ** sq, qd))


def truth_row(P, iv, k):
    o, h, l, c, v, q = ws_strings(P, k)
    pp = P.pp
    return {"market": P.market, "pair": P.name, "interval": iv, "open_time": k[0], "close_time": k[1],
            "open": dec_text(k[2], pp), "high": dec_text(k[3], pp), "low": dec_text(k[4], pp),
            "close": dec_text(k[5], pp), "volume": dec_text(k[6], P.qp), "quote_volume": None,
            "ws_quote_volume": q}


def futures_payload(P, iv, channel, k, event_ms):
    o, h, l, c, v, q = ws_strings(P, k)
    # Ets: the upstream event time, ~70 ms before pts; never before the bar opened, and after
    # the close for a frame sent after the close
    ets = max(event_ms - 70, k[0])
    if ets <= k[1] < event_ms:
        ets = k[1] + 1
    return ('{"data":[{"open":"%s","close":"%s","high":"%s","low":"%s","volume":"%s",'
            '"open_time":%d,"close_time":%d.999,"pair":"%s","duration":"%s","symbol":"%s",'
            '"quote_volume":"%s"}],"ecode":"%s","Ets":%d,"pts":%d,"i":"%s","channel":"%s",'
            '"pr":"futures"}') % (o, c, h, l, v, k[0] // 1000, k[1] // 1000, P.name, iv, P.symbol,
                                  q, P.ecode, ets, event_ms, iv, channel)


def spot_payload(P, iv, channel, k, closed, event_ms):
    o, h, l, c, v, q = ws_strings(P, k)
    return ('{"t":%d,"T":%d,"f":0,"L":0,"o":"%s","c":"%s","h":"%s","l":"%s","v":"%s","n":%d,'
            '"q":"%s","B":"0","i":"%s","channel":"%s","s":"%s","x":%s,"V":"","Q":"","eT":%d,'
            '"ecode":"%s","pr":"spot"}') % (k[0], k[1], o, c, h, l, v, k[8], q, iv, channel, P.symbol,
                                            "true" if closed else "false", event_ms, P.ecode)


def sio_event(event, payload_text):
    """42["<event>",{"event":"<event>","data":"<JSON text>"}]: data is a string to parse again."""
    return '42["%s",{"event":"%s","data":%s}]' % (event, event, json.dumps(payload_text))


def select_opens_window(P, iv, lo, hi, now):
    """Open times t with lo <= t <= hi that exist (listing, delisting, no bar after the forming
    one), ascending."""
    top = floor_open(iv, now)
    last = P.last_open(iv)
    if last is not None and last < top:
        top = last
    if hi is not None:
        top = min(top, floor_open(iv, hi))
    o = max(ceil_open(iv, lo), P.first_open(iv))
    out = []
    d = IV_FIXED.get(iv)
    if d is not None:
        if o <= top:
            out = list(range(o, top + 1, d))
    else:
        while o <= top:
            out.append(o)
            o = next_open(iv, o)
    return out


# --------------------------------------------------------------------------------------------
# Instruments and markets
# --------------------------------------------------------------------------------------------

def instrument_json(P, margin):
    price = P.price
    mq = max(P.step_f, 5.0 / price)
    inst = [
        ("settle_currency_short_name", '"USDT"'), ("quote_currency_short_name", '"USDT"'),
        ("position_currency_short_name", json.dumps(P.target)),
        ("underlying_currency_short_name", json.dumps(P.target)),
        ("status", json.dumps(P.status)), ("pair", json.dumps(P.name)), ("kind", '"perpetual"'),
        ("settlement", '"never"'), ("max_leverage_long", ruby_float(20)),
        ("max_leverage_short", ruby_float(20)), ("unit_contract_value", ruby_float(1)),
        ("price_increment", ruby_float(P.tick_f)), ("quantity_increment", ruby_float(P.step_f)),
        ("min_trade_size", ruby_float(P.step_f)),
        ("min_price", ruby_float(float(fmt(max(1, int(price / P.tick_f / 20)) * P.tick_i, P.pp)))),
        ("max_price", ruby_float(float(fmt(int(price * 20 / P.tick_f) * P.tick_i, P.pp)))),
        ("min_quantity", ruby_float(P.step_f)),
        ("max_quantity", ruby_float(float(int(2_000_000 / price / P.step_f) * P.step_f) or P.step_f)),
        ("min_notional", ruby_float(5)), ("maker_fee", ruby_float(0.025)), ("taker_fee", ruby_float(0.075)),
        ("safety_percentage", ruby_float(2)), ("quanto_to_settle_multiplier", ruby_float(1)),
        ("is_inverse", "false"), ("is_quanto", "false"), ("allow_post_only", "false"),
        ("allow_hidden", "false"),
        ("max_market_order_quantity", ruby_float(float(int(500_000 / price / P.step_f) * P.step_f) or mq)),
        ("funding_frequency", "8"), ("max_notional", ruby_float(320000)),
        ("expiry_time", str(PERPETUAL_EXPIRY)), ("exit_only", "false"),
        ("multiplier_up", ruby_float(8)), ("multiplier_down", ruby_float(8)),
        ("liquidation_fee", ruby_float(1)), ("margin_currency_short_name", json.dumps(margin)),
        ("time_in_force_options", '["good_till_cancel","immediate_or_cancel","fill_or_kill"]'),
        ("order_types", '["market_order","limit_order","stop_limit","take_profit_limit",'
                        '"stop_market","take_profit_market"]'),
        ("dynamic_position_leverage_details",
         '{"5":15000000.0,"8":5000000.0,"10":1000000.0,"15":500000.0,"20":100000.0}'),
        ("dynamic_safety_margin_details",
         '{"50000":1.5,"100000":2.0,"500000":3.0,"1000000":5.0,"5000000":6.0,"15000000":10.0}'),
    ]
    return '{"instrument":{%s}}' % ",".join('"%s":%s' % kv for kv in inst)


def market_details_json(P):
    pp, qp = P.pp, P.qp
    price_u = max(1, int(P.price / P.tick_f)) * P.tick_i
    min_price = js_num(max(P.tick_i, price_u // 100 // P.tick_i * P.tick_i), pp)
    max_price = js_num(price_u * 100, pp)
    min_q = js_num(P.step_i, qp)
    max_q = js_num(int(5_000_000 / P.price / P.step_f) * P.step_i or P.step_i, qp)
    lev = ('"max_leverage":0,"max_leverage_short":0,' if P.ecode == "B" and P.base == "BTC" else
           "" if P.ecode == "G" else '"max_leverage":null,"max_leverage_short":null,')
    otypes = ('["limit_order","market_order","stop_limit","take_profit_limit"]' if P.ecode == "B" else
              '["limit_order"]' if P.ecode == "G" else '["limit_order","market_order"]')
    return ('{"coindcx_name":"%s","base_currency_short_name":"%s","target_currency_short_name":"%s",'
            '"target_currency_name":%s,"base_currency_name":%s,"base_currency_precision":%d,'
            '"target_currency_precision":%d,"min_quantity":%s,"max_quantity":%s,'
            '"max_quantity_market":%s,"min_price":%s,"max_price":%s,"min_notional":%s,%s'
            '"step":%s,"order_types":%s,"symbol":"%s","ecode":"%s","bo_sl_safety_percent":1,'
            '"pair":"%s","status":"%s"}') % (
        P.coindcx_name, P.base, P.target, json.dumps(P.target_name), json.dumps(P.base_name), pp, qp,
        min_q, max_q, max_q, min_price, max_price, "100" if P.base == "INR" else "1", lev,
        js_num(P.step_i, qp), otypes, P.symbol, P.ecode, P.name, P.status)


# --------------------------------------------------------------------------------------------
# Truth / pairs CLIs
# --------------------------------------------------------------------------------------------

def find_pair(market, name):
    futures, spot = build_pairs()
    for P in (futures if market == "futures" else spot):
        if P.name == name:
            return P
    return None


def cmd_truth(args):
    if args.market not in ("futures", "spot"):
        print("market must be futures or spot", file=sys.stderr)
        return 2
    P = find_pair(args.market, args.pair)
    if P is None or args.interval not in INTERVALS:
        print("unknown pair or interval", file=sys.stderr)
        return 2
    now = args.now if args.now is not None else int(time.time() * 1000)
    iv = args.interval
    out = []
    for o in select_opens_window(P, iv, args.start_ms, args.end_ms - 1, now):
        if bar_close(iv, o) >= now:
            break
        out.append(json.dumps(truth_row(P, iv, gen_bar(P, iv, o)), separators=(",", ":")))
    if out:
        sys.stdout.write("\n".join(out) + "\n")
    sys.stdout.flush()
    return 0


def cmd_pairs(args):
    futures, spot = build_pairs()
    for P in futures + spot:
        sys.stdout.write(json.dumps(P.describe(), separators=(",", ":")) + "\n")
    return 0


# --------------------------------------------------------------------------------------------
# Server state: rate limit, faults, stats
# --------------------------------------------------------------------------------------------

REST_FAULTS = ("reset", "status_5xx", "status_429", "garbage", "truncate", "truncate_json", "stall", "slow")
WS_FAULTS = ("ws_drop", "ws_garbage", "ws_duplicate", "ws_stall")
MUTATE_FAULTS = ("mutate",)
MUTATIONS = ("nul", "bad_utf8", "escaped_nul", "deep_nesting", "huge_number", "byte_flip")
FAULT_PARAMS = ("slow_ms", "stall_ms", "ws_stall_ms", "seed", "paths", "script", "silent_channels",
                "ws_delay_ms", "join_delay_ms")

RATE_429_BODY = b"Too many requests, please try again later."
NOT_FOUND = '{"status":"error","message":"not_found","code":404}'
INVALID_REQUEST = '{"code":400,"message":"Invalid Request."}'

GARBAGE = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway"
    b"</h1></center>\r\n<hr><center>cloudflare</center>\r\n</body>\r\n</html>\r\n",
    b"\x00\x9f\x92\x96garbage\xff\xfe not json at all",
    b'{"s":"ok","data":[{"open":1,"high":2}]}]] trailing junk',
    b"OK",
)
WS_GARBAGE = (
    '42["candlestick",{"event":"candlestick","data":"{\\"data\\":[{\\"open\\":',  # cut in half
    '42["candlestick",{"event":"candlestick","data":"not json"}]',                 # data not JSON
    '42["candlestick",{"event":"candlestick","data":{"open":"1"}}]',               # data not a string
    '42["candlestick"',                                                             # socket.io JSON cut
    '9garbage',                                                                     # no such packet type
    '42["candlestick",{"event":"candlestick","data":"{\\"data\\":[{\\"open\\":\\"1e400\\"}]}"}]',
)


DEFAULT_CONFIG = {
    "rate_limit": 5000,             # requests per window per client IP, per host family
    "rate_window_s": 60,
    "clock_offset_ms": 0,
    "ping_interval_ms": 25000,      # Engine.IO handshake values of stream.coindcx.com
    "ping_timeout_ms": 20000,
    "connect_timeout_ms": 45000,    # EIO4: socket.io CONNECT must come within this
    "max_payload": 1000000,
    "ws_futures_interval_ms": 500,  # push period of a forming futures bar (~2/s live)
    "ws_spot_interval_ms": 2000,    # spot (~every 2 s live)
    "ws_close_exact": 0,            # 1: the frame at a close carries the final bar
    "ws_close_lag_ms": 1500,        # 0: the frame at a close carries the bar as it was this long before
    "candlesticks_max_bars": 0,     # 0: no cap (none was seen live); N: the oldest N bars only
    "leave_event": 0,               # 1: a futures leave is answered with a "Left Channel" event
    "app_ping_timeout_ms": 0,       # N: close a connection that sent no "ping" event for N ms
}
CONFIG_KEYS = tuple(DEFAULT_CONFIG)


class Stats:
    def __init__(self):
        self.reset()

    def reset(self):
        self.requests = {}
        self.statuses = {}
        self.rows = {"candlesticks": 0, "candles": 0}
        self.rate_limited_429 = 0
        self.injected_429 = 0
        self.faults = {k: 0 for k in REST_FAULTS + WS_FAULTS + MUTATE_FAULTS}
        self.faults.update({"silenced_frames": 0, "delayed_ticks": 0, "delayed_joins": 0})
        self.mutations = {k: 0 for k in MUTATIONS}
        self.ws = {k: 0 for k in (
            "connections_total", "eio3_connections", "eio4_connections", "frames_sent",
            "candle_frames_sent", "futures_frames_sent", "spot_frames_sent", "close_frames_sent",
            "garbage_frames", "connects", "joins", "joins_silent", "leaves", "events_ignored",
            "engine_pings_in", "engine_pongs_in", "engine_pings_out", "engine_pongs_out",
            "app_pings_in", "ping_timeouts", "connect_timeouts", "app_ping_timeouts",
            "heartbeat_direction_errors", "parse_errors", "polling_handshakes", "session_unknown",
            "bad_handshakes", "firehose_frames", "drops")}

    def status(self, code):
        k = str(code)
        self.statuses[k] = self.statuses.get(k, 0) + 1


class Server:
    def __init__(self, args):
        self.args = args
        self.futures, self.spot = build_pairs()
        self.fut_by = {P.name: P for P in self.futures}
        self.spot_by = {P.name: P for P in self.spot}
        self.cfg = dict(DEFAULT_CONFIG)
        self.cfg.update({"rate_limit": args.rate_limit, "ping_interval_ms": args.ping_interval_ms,
                         "ping_timeout_ms": args.ping_timeout_ms,
                         "ws_futures_interval_ms": args.ws_futures_interval_ms,
                         "ws_spot_interval_ms": args.ws_spot_interval_ms})
        if args.config:
            self.set_config(json.loads(args.config))
        self.stats = Stats()
        self.windows = {}  # (family, ip) -> [window end ms, hits]
        self.conns = set()
        self.set_faults(json.loads(args.faults) if args.faults else {})

    def now(self):
        return int(time.time() * 1000) + int(self.cfg["clock_offset_ms"])

    def reset(self):
        self.stats.reset()
        self.windows = {}

    # ---- rate limit (express-rate-limit style: per key, window from the first hit) ---------
    def rate_hit(self, family, ip, now):
        """Count one request. -> (limit, remaining, reset_s, exceeded)"""
        limit = int(self.cfg["rate_limit"])
        win = int(self.cfg["rate_window_s"]) * 1000
        w = self.windows.get((family, ip))
        if w is None or now >= w[0]:
            w = [now + win, 0]
            self.windows[(family, ip)] = w
        w[1] += 1
        reset = max(0, -(-(w[0] - now) // 1000))
        return limit, max(0, limit - w[1]), reset, w[1] > limit

    # ---- faults ---------------------------------------------------------------------------
    def set_faults(self, f):
        if not isinstance(f, dict):
            raise ValueError("faults must be a JSON object")
        for k, v in f.items():
            if k in REST_FAULTS or k in WS_FAULTS or k in MUTATE_FAULTS:
                if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 <= v <= 1:
                    raise ValueError("fault %s must be a probability in [0,1]" % k)
            elif k not in FAULT_PARAMS:
                raise ValueError("unknown fault key %s" % k)
        sc = f.get("silent_channels", [])
        if not isinstance(sc, list) or not all(isinstance(x, str) for x in sc):
            raise ValueError("silent_channels must be a list of channel names")
        for k in ("ws_delay_ms", "join_delay_ms", "slow_ms", "stall_ms", "ws_stall_ms"):
            if k in f and (not isinstance(f[k], (int, float)) or isinstance(f[k], bool) or f[k] < 0):
                raise ValueError("%s must be a number >= 0" % k)
        script = list(f.get("script") or [])
        for s in script:
            if s not in REST_FAULTS and s not in MUTATE_FAULTS:
                raise ValueError("unknown scripted fault %s" % s)
        self.faults = dict(f)
        self.script = script
        self.silent = set(sc)
        self.rng = random.Random(f.get("seed", self.args.seed))
        self.ws_rng = random.Random((f.get("seed", self.args.seed) or 0) + 7919)

    def draw_faults(self, path):
        draws = {k: self.rng.random() for k in REST_FAULTS}
        paths = self.faults.get("paths")
        if paths and path not in paths:
            return set()
        hit = set()
        if self.script:
            hit.add(self.script.pop(0))
        for k in REST_FAULTS:
            p = self.faults.get(k, 0)
            if p and draws[k] < p:
                hit.add(k)
        for k in MUTATE_FAULTS:
            p = self.faults.get(k, 0)
            if p and self.rng.random() < p:
                hit.add(k)
        return hit

    # ---- config ---------------------------------------------------------------------------
    def set_config(self, cfg):
        if not isinstance(cfg, dict):
            raise ValueError("config must be a JSON object")
        for k, v in cfg.items():
            if k not in CONFIG_KEYS:
                raise ValueError("unknown config key %s" % k)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v != int(v):
                raise ValueError("config %s must be an integer" % k)
            if k != "clock_offset_ms" and v < 0:
                raise ValueError("config %s must be >= 0" % k)
            if k in ("ping_interval_ms", "ping_timeout_ms", "ws_futures_interval_ms",
                     "ws_spot_interval_ms", "rate_window_s", "connect_timeout_ms") and v < 1:
                raise ValueError("config %s must be >= 1" % k)
        for k, v in cfg.items():
            self.cfg[k] = int(v)

    def stats_json(self):
        st = self.stats
        chans = {}
        for c in self.conns:
            for ch in c.channels:
                chans[ch] = chans.get(ch, 0) + 1
        ws = dict(st.ws)
        ws["connections_open"] = len(self.conns)
        ws["channels_joined"] = sum(len(c.channels) for c in self.conns)
        ws["channels"] = chans
        return {"requests": st.requests, "responses_by_status": st.statuses, "rows": dict(st.rows),
                "rate_limited_429": st.rate_limited_429, "injected_429": st.injected_429,
                "faults": dict(st.faults), "mutations": dict(st.mutations), "ws": ws}


# --------------------------------------------------------------------------------------------
# REST
# --------------------------------------------------------------------------------------------

DIGITS = re.compile(r"^[0-9]{1,15}$")


def candlesticks(srv, q, now):
    """GET /market_data/candlesticks (public host).  -> (status, body)"""
    pair, res, fr, to = q.get("pair", ""), q.get("resolution", ""), q.get("from", ""), q.get("to", "")
    if not pair or not res or not DIGITS.match(fr) or not DIGITS.match(to):
        return 400, INVALID_REQUEST
    iv = RESOLUTIONS.get(res)
    if iv is None:
        return 400, INVALID_REQUEST
    # pcode is not looked at: f and s gave byte-identical answers live
    P = srv.fut_by.get(pair) or srv.spot_by.get(pair)
    if P is None:
        return 200, '{"s":"ok","data":[]}'
    lo, hi = int(fr) * 1000, int(to) * 1000
    opens = select_opens_window(P, iv, lo, hi, now) if lo <= hi else []
    cap = srv.cfg["candlesticks_max_bars"]
    if cap:
        opens = opens[:cap]
    srv.stats.rows["candlesticks"] += len(opens)
    return 200, '{"s":"ok","data":[%s]}' % ",".join(bar_rest_json(P, bar_at(P, iv, o, now)[0]) for o in opens)


def spot_candles(srv, q, now):
    """GET /market_data/candles (public host).  -> (status, body)"""
    iv = q.get("interval", "")
    pair = q.get("pair", "")
    if iv not in SPOT_REST_IVS:
        return 422, ('{"code":422,"errorCode":"BFF-SO-004","message":"interval must be one of '
                     '[1m, 15m, 1h, 1d]","status":"error"}')
    P = srv.spot_by.get(pair)
    if P is None:
        return 422, json.dumps({"code": 422, "errorCode": "BFF-SO-004", "message": "Invalid pair %s" % pair,
                                "status": "error"}, separators=(",", ":"))

    def num(name):
        v = q.get(name, "")
        return int(v) if DIGITS.match(v) else None
    limit = num("limit")
    limit = 500 if not limit else min(limit, 1000)
    st, en = num("startTime"), num("endTime")
    if st is None:
        # endTime alone is ignored: the newest `limit` bars
        top = floor_open(iv, now)
        last = P.last_open(iv)
        if last is not None and last < top:
            top = last
        opens = []
        o = top
        first = P.first_open(iv)
        while o >= first and len(opens) < limit:
            opens.append(o)
            o = prev_open(iv, o)
    else:
        opens = select_opens_window(P, iv, st, en, now)[:limit]
        opens.reverse()
    srv.stats.rows["candles"] += len(opens)
    return 200, "[" + ",".join(bar_rest_json(P, bar_at(P, iv, o, now)[0]) for o in opens) + "]"


def active_instruments(srv, q):
    wanted = q.getall("margin_currency_short_name[]", []) + q.getall("margin_currency_short_name", [])
    if not wanted:
        wanted = ["USDT"]
    out = []
    for P in srv.futures:
        if P.status == "active" and any(m in P.margins for m in wanted):
            out.append(P.name)
    return 200, json.dumps(out, separators=(",", ":"))


def instrument(srv, q):
    pair = q.get("pair", "")
    margin = q.get("margin_currency_short_name", "") or "USDT"
    P = srv.fut_by.get(pair)
    if P is None or margin not in P.margins:
        return 422, json.dumps({"code": 422, "message": "Instrument not found", "status": "error"},
                               separators=(",", ":"))
    return 200, instrument_json(P, margin)


def rest_route(srv, method, path, q, now):
    if method != "GET":
        return 404, NOT_FOUND
    if path == "/market_data/candlesticks":
        return candlesticks(srv, q, now)
    if path == "/market_data/candles":
        return spot_candles(srv, q, now)
    if path == "/exchange/v1/derivatives/futures/data/active_instruments":
        return active_instruments(srv, q)
    if path == "/exchange/v1/derivatives/futures/data/instrument":
        return instrument(srv, q)
    if path == "/exchange/v1/markets_details":
        return 200, "[" + ",".join(market_details_json(P) for P in srv.spot) + "]"
    if path == "/exchange/v1/markets":
        return 200, json.dumps([P.coindcx_name for P in srv.spot if P.status == "active"],
                               separators=(",", ":"))
    return 404, NOT_FOUND


def parse_channel(srv, name):
    """-> ("futures"|"spot", Pair, interval), or None for a channel that is accepted and silent."""
    if name.endswith("-futures"):
        pair, sep, res = name[:-8].rpartition("_")
        P = srv.fut_by.get(pair)
        if sep and P is not None and res in FUTURES_WS_IVS:
            return "futures", P, res
        return None
    pair, sep, res = name.rpartition("_")
    P = srv.spot_by.get(pair)
    if sep and P is not None and res in SPOT_WS_IVS:
        return "spot", P, res
    return None


def close_snapshot(srv, P, iv, o, last_sent=None):
    """The bar the socket sends at its close: the final bar if ws_close_exact, else the bar as it
    stood ws_close_lag_ms before the close, but never behind the last frame sent for it
    (last_sent: the instant that frame showed).  The socket's last snapshot is not the final bar."""
    k = gen_bar(P, iv, o)
    if srv.cfg["ws_close_exact"]:
        return k
    t = max(k[1] + 1 - srv.cfg["ws_close_lag_ms"], last_sent or 0)
    if t > k[1]:
        return k
    return partial_bar(P, k, (t - o) / float(k[1] + 1 - o))


def channel_frame(P, iv, name, k, closed, now, kind):
    if kind == "futures":
        return sio_event("candlestick", futures_payload(P, iv, name, k, now))
    return sio_event("candlestick", spot_payload(P, iv, name, k, closed, now))


# --------------------------------------------------------------------------------------------
# HTTP application: REST, socket.io, control
# --------------------------------------------------------------------------------------------

def make_app(srv):
    from aiohttp import web, WSMsgType

    def jresp(status, body, headers=None, ctype="application/json"):
        srv.stats.status(status)
        b = body.encode() if isinstance(body, str) else body
        return web.Response(status=status, body=b, headers=headers or {},
                            content_type=ctype, charset="utf-8")

    def rst(request):
        tr = request.transport
        if tr is not None:
            sock = tr.get_extra_info("socket")
            try:
                if sock is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
            tr.abort()

    async def rest(request):
        path = request.path
        q = request.query
        st = srv.stats
        st.requests[path] = st.requests.get(path, 0) + 1
        now = srv.now()
        ip = request.remote or "127.0.0.1"
        family = "public" if path.startswith("/market_data/") else "api"
        limit, remaining, reset, exceeded = srv.rate_hit(family, ip, now)
        hdrs = {"ratelimit-policy": "%d;w=%d" % (limit, srv.cfg["rate_window_s"]),
                "ratelimit": "limit=%d, remaining=%d, reset=%d" % (limit, remaining, reset)}

        def too_many():
            h = dict(hdrs)
            h["ratelimit"] = "limit=%d, remaining=0, reset=%d" % (limit, reset)
            h["Retry-After"] = str(max(1, reset))
            return jresp(429, RATE_429_BODY, h, "text/html")

        if exceeded:
            st.rate_limited_429 += 1
            return too_many()

        faults = srv.draw_faults(path)
        for k in faults:
            st.faults[k] += 1
        if "slow" in faults:
            await asyncio.sleep(srv.faults.get("slow_ms", 1000) / 1000.0)
        if "reset" in faults:
            rst(request)
            return web.Response(status=500)  # never reaches the client
        if "status_5xx" in faults:
            variant = srv.rng.randrange(4)
            if variant == 0:
                return jresp(500, '{"status":"error","message":"Internal Server Error","code":500}', hdrs)
            if variant == 1:
                return jresp(502, GARBAGE[0], hdrs, "text/html")
            if variant == 2:
                return jresp(503, '{"status":"error","message":"Service Unavailable","code":503}', hdrs)
            return jresp(504, b"<html><head><title>504 Gateway Time-out</title></head><body>"
                              b"<center><h1>504 Gateway Time-out</h1></center></body></html>", hdrs,
                         "text/html")
        if "status_429" in faults:
            st.injected_429 += 1
            return too_many()
        if "garbage" in faults:
            return jresp(200, GARBAGE[srv.rng.randrange(len(GARBAGE))], hdrs)

        status, body = rest_route(srv, request.method, path, q, now)
        data = body.encode()
        if "mutate" in faults and status == 200:
            kind, data = mutate_body(srv.rng, data)
            st.mutations[kind] += 1
        if "truncate_json" in faults:
            return jresp(status, data[:max(1, len(data) // 2)], hdrs)
        if "truncate" in faults or "stall" in faults:
            st.status(status)
            resp = web.StreamResponse(status=status, headers=hdrs)
            resp.content_type = "application/json"
            resp.charset = "utf-8"
            resp.content_length = len(data)
            await resp.prepare(request)
            if "stall" in faults:
                await asyncio.sleep(srv.faults.get("stall_ms", 2000) / 1000.0)
            if "truncate" in faults:
                await resp.write(data[:len(data) // 2])
                tr = request.transport
                if tr is not None:
                    tr.close()
                return resp
            await resp.write(data)
            await resp.write_eof()
            return resp
        return jresp(status, data, hdrs)

    # ---- socket.io ---------------------------------------------------------------------------
    class Conn:
        def __init__(self, ws, eio):
            self.ws = ws
            self.eio = eio
            self.sid = secrets.token_urlsafe(15)
            self.sio_sid = secrets.token_urlsafe(15)
            self.connected = False
            self.channels = {}  # name -> parse_channel() result (None: accepted, silent)
            self.state = {}     # name -> open time of the bar last sent
            self.sent_at = {}   # name -> the instant that bar's last frame showed
            mono = time.monotonic()
            self.opened = mono
            self.ping_interval = srv.cfg["ping_interval_ms"] / 1000.0
            self.ping_timeout = srv.cfg["ping_timeout_ms"] / 1000.0
            # EIO3: the client pings, silence for interval + timeout closes; EIO4: the server
            # pings after `interval` and waits `timeout` for any packet
            self.deadline = mono + self.ping_interval + self.ping_timeout if eio == 3 else float("inf")
            self.next_ping = mono + self.ping_interval if eio == 4 else None
            self.last_app_ping = mono
            self.next_push = {"futures": mono, "spot": mono}
            self.stalled_until = None
            self.closing = False
            self.lock = asyncio.Lock()
            self.tasks = set()

    def eio_open(sid, eio, upgrades=()):
        return "0" + json.dumps({"sid": sid, "upgrades": list(upgrades),
                                 "pingInterval": srv.cfg["ping_interval_ms"],
                                 "pingTimeout": srv.cfg["ping_timeout_ms"],
                                 "maxPayload": srv.cfg["max_payload"]}, separators=(",", ":"))

    def eio_error(code, msg):
        srv.stats.status(400)
        return web.Response(status=400, text=json.dumps({"code": code, "message": msg},
                                                         separators=(",", ":")),
                            content_type="application/json")

    async def send(c, text, kind=None, force=False):
        if c.closing or c.ws.closed:
            return
        if c.stalled_until is not None and not force:
            return
        async with c.lock:
            await c.ws.send_str(text)
        w = srv.stats.ws
        w["frames_sent"] += 1
        if kind:
            w["candle_frames_sent"] += 1
            w[kind + "_frames_sent"] += 1

    async def drop(c):
        c.closing = True
        srv.stats.ws["drops"] += 1
        tr = c.ws._req.transport if c.ws._req is not None else None
        if tr is not None:
            tr.abort()

    async def close(c, counter=None):
        if counter:
            srv.stats.ws[counter] += 1
        c.closing = True
        try:
            await c.ws.close()
        except Exception:
            pass

    def note_joined(c, name, info):
        kind, P, iv = info
        o = floor_open(iv, srv.now())
        if name not in c.state and P.has_bar(iv, o):
            c.state[name] = o

    def do_join(c, name):
        if c.closing or c.ws.closed or not c.connected or name in c.channels:
            return
        info = parse_channel(srv, name)
        c.channels[name] = info
        if info is None:
            srv.stats.ws["joins_silent"] += 1
        else:
            note_joined(c, name, info)

    async def do_leave(c, name):
        c.channels.pop(name, None)
        c.state.pop(name, None)
        c.sent_at.pop(name, None)
        if srv.cfg["leave_event"] and name.endswith("-futures"):
            await send(c, sio_event("Left Channel", json.dumps({"channelName": name}, separators=(",", ":"))))

    async def on_sio(c, s):
        """One Socket.IO packet (the text after the Engine.IO '4')."""
        w = srv.stats.ws
        if not s or s[0] not in "0123456":
            w["parse_errors"] += 1
            await close(c)
            return
        t = int(s[0])
        i = 1
        if t in (5, 6):  # binary events: not used by CoinDCX
            w["events_ignored"] += 1
            return
        nsp = "/"
        if i < len(s) and s[i] == "/":
            j = s.find(",", i)
            nsp = s[i:j] if j >= 0 else s[i:]
            i = j + 1 if j >= 0 else len(s)
        while i < len(s) and s[i].isdigit():  # an ack id: never acknowledged
            i += 1
        payload = None
        if i < len(s):
            try:
                payload = json.loads(s[i:])
            except ValueError:
                w["parse_errors"] += 1
                await close(c)
                return
        if t == 0:
            if nsp.split("?")[0] != "/":
                err = ('{"message":"Invalid namespace"}' if c.eio == 4 else '"Invalid namespace"')
                await send(c, "44%s,%s" % (nsp, err))
                return
            c.connected = True
            w["connects"] += 1
            await send(c, '40{"sid":"%s"}' % c.sio_sid if c.eio == 4 else "40")
            return
        if t == 1:
            if nsp == "/":
                c.connected = False
                c.channels.clear()
                c.state.clear()
                c.sent_at.clear()
            return
        if t != 2:
            w["events_ignored"] += 1
            return
        if not isinstance(payload, list) or not payload or not isinstance(payload[0], str):
            w["parse_errors"] += 1
            await close(c)
            return
        if not c.connected or nsp != "/":
            w["events_ignored"] += 1
            return
        ev = payload[0]
        arg = payload[1] if len(payload) > 1 else None
        if ev in ("join", "leave") and isinstance(arg, dict) and isinstance(arg.get("channelName"), str):
            name = arg["channelName"]
            if ev == "join":
                w["joins"] += 1
                delay = srv.faults.get("join_delay_ms", 0)
                if delay:
                    srv.stats.faults["delayed_joins"] += 1
                    asyncio.get_running_loop().call_later(delay / 1000.0, do_join, c, name)
                else:
                    do_join(c, name)
            else:
                w["leaves"] += 1
                await do_leave(c, name)
        elif ev == "ping":
            w["app_pings_in"] += 1
            c.last_app_ping = time.monotonic()
        else:
            w["events_ignored"] += 1

    async def on_text(c, data):
        w = srv.stats.ws
        mono = time.monotonic()
        if not data or data[0] not in "0123456":
            w["parse_errors"] += 1
            await close(c)
            return
        # any packet is a sign of life
        c.deadline = mono + c.ping_interval + c.ping_timeout
        t = data[0]
        if t == "2":
            w["engine_pings_in"] += 1
            if c.eio != 3:
                w["heartbeat_direction_errors"] += 1
                await close(c)
                return
            if c.stalled_until is None:
                await send(c, "3" + data[1:])
                w["engine_pongs_out"] += 1
        elif t == "3":
            w["engine_pongs_in"] += 1
            if c.eio == 3:
                w["heartbeat_direction_errors"] += 1
                await close(c)
                return
            c.next_ping = mono + c.ping_interval
        elif t == "4":
            await on_sio(c, data[1:])
        elif t == "1":
            await close(c)
        # 0 (open), 5 (upgrade), 6 (noop): nothing to do

    async def push(c, kind, now):
        frames = []
        for name, info in list(c.channels.items()):
            if info is None or info[0] != kind:
                continue
            _kind, P, iv = info
            o = floor_open(iv, now)
            prev = c.state.get(name)
            out = []
            if prev is not None and prev < o and P.has_bar(iv, prev):
                snap = close_snapshot(srv, P, iv, prev, c.sent_at.get(name))
                out.append(channel_frame(P, iv, name, snap, True, now, kind))
                srv.stats.ws["close_frames_sent"] += 1
            if P.has_bar(iv, o):
                c.state[name] = o
                c.sent_at[name] = now
                k, _ = bar_at(P, iv, o, now)
                out.append(channel_frame(P, iv, name, k, False, now, kind))
            else:
                c.state.pop(name, None)
            if name in srv.silent:
                srv.stats.faults["silenced_frames"] += len(out)
                continue
            frames.extend(out)
        if not frames:
            return
        delay = srv.faults.get("ws_delay_ms", 0)
        if delay:
            # late frames, in order, without holding up the heartbeat
            srv.stats.faults["delayed_ticks"] += 1
            c.tasks.add(asyncio.ensure_future(send_frames(c, frames, kind, delay / 1000.0)))
            c.tasks = {t for t in c.tasks if not t.done()}
            return
        await send_frames(c, frames, kind)

    async def send_frames(c, frames, kind, delay=0.0):
        if delay:
            await asyncio.sleep(delay)
        f = srv.faults
        for fr in frames:
            if f.get("ws_garbage") and srv.ws_rng.random() < f["ws_garbage"]:
                srv.stats.faults["ws_garbage"] += 1
                srv.stats.ws["garbage_frames"] += 1
                await send(c, WS_GARBAGE[srv.ws_rng.randrange(len(WS_GARBAGE))])
            await send(c, fr, kind)
            if f.get("ws_duplicate") and srv.ws_rng.random() < f["ws_duplicate"]:
                srv.stats.faults["ws_duplicate"] += 1
                await send(c, fr, kind)

    async def loop(c):
        last_fault_check = time.monotonic()
        try:
            while not c.ws.closed and not c.closing:
                await asyncio.sleep(0.05)
                mono = time.monotonic()
                if c.stalled_until is not None and mono >= c.stalled_until:
                    c.stalled_until = None
                stalled = c.stalled_until is not None
                if not stalled:
                    if mono >= c.deadline:
                        await close(c, "ping_timeouts")
                        return
                    if c.eio == 4 and not c.connected and mono - c.opened >= srv.cfg["connect_timeout_ms"] / 1000.0:
                        await close(c, "connect_timeouts")
                        return
                    apt = srv.cfg["app_ping_timeout_ms"]
                    if apt and mono - c.last_app_ping >= apt / 1000.0:
                        await close(c, "app_ping_timeouts")
                        return
                    if c.next_ping is not None and mono >= c.next_ping:
                        c.next_ping = None
                        c.deadline = mono + c.ping_timeout
                        await send(c, "2")
                        srv.stats.ws["engine_pings_out"] += 1
                if mono - last_fault_check >= 1.0:
                    last_fault_check = mono
                    f = srv.faults
                    if f.get("ws_drop") and srv.ws_rng.random() < f["ws_drop"]:
                        srv.stats.faults["ws_drop"] += 1
                        await drop(c)
                        return
                    if f.get("ws_stall") and not stalled and srv.ws_rng.random() < f["ws_stall"]:
                        srv.stats.faults["ws_stall"] += 1
                        ms = f.get("ws_stall_ms", 0)
                        c.stalled_until = mono + ms / 1000.0 if ms else float("inf")
                        continue
                if stalled or not c.connected or not c.channels:
                    continue
                now = None
                for kind, key in (("futures", "ws_futures_interval_ms"), ("spot", "ws_spot_interval_ms")):
                    if mono >= c.next_push[kind]:
                        c.next_push[kind] = mono + srv.cfg[key] / 1000.0
                        if now is None:
                            now = srv.now()
                        await push(c, kind, now)
        except (ConnectionError, RuntimeError, asyncio.CancelledError):
            pass

    async def firehose(frames, channel, start_ms):
        """Send `frames` consecutive closed-bar frames per joined channel as fast as possible."""
        total = 0
        cache = {}
        targets = [c for c in list(srv.conns) if c.connected and not c.closing]
        for c in targets:
            per = []
            for name, info in c.channels.items():
                if info is None or channel not in (None, name):
                    continue
                if name not in cache:
                    kind, P, iv = info
                    if start_ms is None:
                        o = floor_open(iv, srv.now())
                        for _ in range(frames):
                            o = prev_open(iv, o)
                    else:
                        o = ceil_open(iv, start_ms)
                    o = max(o, P.first_open(iv))
                    lst = []
                    for _ in range(frames):
                        k = gen_bar(P, iv, o)
                        lst.append(channel_frame(P, iv, name, k, True, k[1] + 700, kind))
                        o = k[1] + 1
                    cache[name] = (kind, lst)
                per.append(cache[name])
            sent = 0
            async with c.lock:
                for i in range(frames):
                    for kind, lst in per:
                        if c.ws.closed:
                            break
                        await c.ws.send_str(lst[i])
                        sent += 1
                    if i % 256 == 255:
                        await asyncio.sleep(0)
            w = srv.stats.ws
            w["frames_sent"] += sent
            w["candle_frames_sent"] += sent
            w["firehose_frames"] += sent
            total += sent
        return len(targets), total

    async def ws_handler(request, eio):
        ws = web.WebSocketResponse(autoping=True, autoclose=True, compress=False, timeout=1.0,
                                   max_msg_size=1 << 20)
        await ws.prepare(request)
        c = Conn(ws, eio)
        w = srv.stats.ws
        w["connections_total"] += 1
        w["eio%d_connections" % eio] += 1
        srv.conns.add(c)
        pusher = None
        try:
            await send(c, eio_open(c.sid, eio))
            if eio == 3:  # a v4 server with allowEIO3 connects v2 clients to "/" by itself
                c.connected = True
                w["connects"] += 1
                await send(c, "40")
            pusher = asyncio.ensure_future(loop(c))
            async for msg in ws:
                if c.closing:
                    break
                if msg.type == WSMsgType.TEXT:
                    if c.stalled_until is None:
                        await on_text(c, msg.data)
                elif msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                    break
                # binary frames: ignored
        except (ConnectionError, asyncio.CancelledError, RuntimeError):
            pass
        finally:
            c.closing = True
            if pusher is not None:
                pusher.cancel()
            for t in c.tasks:
                t.cancel()
            srv.conns.discard(c)
        return ws

    async def socketio(request):
        q = request.query
        eio = 4 if q.get("EIO") == "4" else 3  # engine.io: anything but "4" is protocol 3
        transport = q.get("transport", "")
        if transport not in ("polling", "websocket"):
            srv.stats.ws["bad_handshakes"] += 1
            return eio_error(0, "Transport unknown")
        if "sid" in q:
            srv.stats.ws["session_unknown"] += 1
            return eio_error(1, "Session ID unknown")
        if transport == "polling":
            srv.stats.ws["polling_handshakes"] += 1
            pkt = eio_open(secrets.token_urlsafe(15), eio, ["websocket"])
            body = pkt if eio == 4 else "%d:%s" % (len(pkt), pkt)
            srv.stats.status(200)
            return web.Response(status=200, text=body, content_type="text/plain", charset="UTF-8")
        if request.headers.get("Upgrade", "").lower() != "websocket":
            srv.stats.ws["bad_handshakes"] += 1
            return eio_error(3, "Bad request")
        return await ws_handler(request, eio)

    # ---- control endpoints -------------------------------------------------------------------
    async def control(request):
        path = request.path
        method = request.method

        def ok(obj, status=200):
            return web.Response(status=status, text=json.dumps(obj, separators=(",", ":")),
                                content_type="application/json")

        async def body_json():
            raw = await request.read()
            return json.loads(raw) if raw.strip() else {}

        try:
            if path == "/_fake/faults":
                if method == "POST":
                    srv.set_faults(await body_json())
                return ok(srv.faults)
            if path == "/_fake/stats":
                return ok(srv.stats_json())
            if path == "/_fake/reset" and method == "POST":
                srv.reset()
                return ok({"result": "reset"})
            if path == "/_fake/config":
                if method == "POST":
                    srv.set_config(await body_json())
                return ok(srv.cfg)
            if path == "/_fake/pairs":
                return ok([P.describe() for P in srv.futures + srv.spot])
            if path == "/_fake/drop" and method == "POST":
                cfg = await body_json()
                how = cfg.get("how", "abort")
                if how not in ("abort", "close"):
                    raise ValueError("how must be abort or close")
                n = 0
                for c in list(srv.conns):
                    n += 1
                    if how == "abort":
                        await drop(c)
                    else:
                        await close(c)
                return ok({"dropped": n})
            if path == "/_fake/firehose" and method == "POST":
                cfg = await body_json()
                n = await firehose(int(cfg.get("frames", 1000)), cfg.get("channel"), cfg.get("start_ms"))
                return ok({"connections": n[0], "frames": n[1]})
        except (ValueError, TypeError) as e:
            return ok({"error": str(e)}, status=400)
        return ok({"error": "unknown control endpoint"}, status=404)

    async def dispatch(request):
        path = request.path
        if path.startswith("/_fake/"):
            return await control(request)
        if path == "/socket.io/":
            return await socketio(request)
        return await rest(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", dispatch)
    return app


async def serve_main(args):
    from aiohttp import web
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print("refusing to bind non-loopback host %s" % args.host, file=sys.stderr)
        return 2
    srv = Server(args)
    app = make_app(srv)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port, shutdown_timeout=1.0, reuse_address=True)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    if args.port_file:
        tmp = args.port_file + ".tmp.%d" % os.getpid()
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.replace(tmp, args.port_file)
    print("fake_coindcx listening on %s:%d" % (args.host, port), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for c in list(srv.conns):
        c.closing = True
        try:
            await asyncio.wait_for(c.ws.close(), 0.5)
        except Exception:
            pass
    await runner.cleanup()
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(prog="fake_coindcx.py", description="Fake CoinDCX market data")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="run the HTTP/socket.io server")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=0)
    s.add_argument("--port-file", default=None)
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--faults", default=None, help="JSON object, see PROTOCOL.md")
    s.add_argument("--config", default=None, help="JSON object of /_fake/config keys")
    s.add_argument("--rate-limit", type=int, default=5000)
    s.add_argument("--ping-interval-ms", type=int, default=25000)
    s.add_argument("--ping-timeout-ms", type=int, default=20000)
    s.add_argument("--ws-futures-interval-ms", type=int, default=500)
    s.add_argument("--ws-spot-interval-ms", type=int, default=2000)
    t = sub.add_parser("truth", help="JSON lines of closed bars with open time in [START_MS, END_MS)")
    t.add_argument("market", help="futures or spot")
    t.add_argument("pair")
    t.add_argument("interval")
    t.add_argument("start_ms", type=int)
    t.add_argument("end_ms", type=int)
    t.add_argument("--now", type=int, default=None, help="pretend the current time is MS")
    sub.add_parser("pairs", help="JSON lines describing every pair")
    args = ap.parse_args(argv)
    if args.cmd == "truth":
        return cmd_truth(args)
    if args.cmd == "pairs":
        return cmd_pairs(args)

    def _early_exit(signum, frame):
        raise SystemExit(0)
    signal.signal(signal.SIGTERM, _early_exit)
    signal.signal(signal.SIGINT, _early_exit)
    try:
        return asyncio.run(serve_main(args))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""Fake Binance USD-M futures exchange (REST + market-stream WebSocket) for mdfeed tests.

Run with Debian's /usr/bin/python3 (3.11) and python3-aiohttp (3.8); standard library + aiohttp only.

    fake_binance.py serve  [--host 127.0.0.1] [--port 0] [--port-file F] [--symbols A,B] [--synthetic N]
                           [--weight-limit 2400] [--ban-after 5] [--ban-seconds 120] [--seed 1] [--faults JSON]
                           [--ws-interval-ms 250] [--ws-max-streams 200] [--ws-max-lifetime 86400]
                           [--ws-ping-interval 180] [--ws-pong-timeout 600] [--ws-max-msg-rate 10]
                           [--board-epoch 0] [--funding-limit 500] [--oi-limit 1000]
    fake_binance.py truth  SYMBOL INTERVAL START_MS END_MS [--now MS] [--symbols ...] [--synthetic N]
    fake_binance.py pages  SYMBOL INTERVAL START_MS COUNT [--limit 499] [--symbols ...] [--synthetic N]
    fake_binance.py ticker [--symbols ...] [--synthetic N] [--board-epoch N]
    fake_binance.py funding SYMBOL START_MS END_MS [--now MS] [--symbols ...] [--synthetic N]
    fake_binance.py oi     SYMBOL PERIOD START_MS END_MS [--now MS] [--symbols ...] [--synthetic N]

FAKE_BINANCE_TODAY_MS, when set, pins the day NEWUSDT's listing counts from (10 days before it).
DOGEUSDT has no candle shorter than 1d overlapping 03:00-03:30 UTC, every day (a maintenance window).

Every candle is a pure function of (symbol, interval, open_time_ms), every funding row of
(symbol, boundary), every open-interest row of (symbol, timestamp), every ticker quoteVolume of
(symbol, board epoch) unless pinned; see PROTOCOL.md for what is
modelled on the real exchange and what is deliberately simplified.
"""

import argparse
import asyncio
import copy
import hashlib
import json
import math
import os
import random
import re
import signal
import socket
import struct
import sys
import time

# --------------------------------------------------------------------------------------------
# Time / interval arithmetic
# --------------------------------------------------------------------------------------------

MIN = 60_000
HOUR = 3_600_000
DAY = 86_400_000
IV_FIXED = {
    "1m": MIN, "3m": 3 * MIN, "5m": 5 * MIN, "15m": 15 * MIN, "30m": 30 * MIN,
    "1h": 60 * MIN, "2h": 120 * MIN, "4h": 240 * MIN, "6h": 360 * MIN, "8h": 480 * MIN,
    "12h": 720 * MIN, "1d": DAY, "3d": 3 * DAY,
}
INTERVALS = tuple(IV_FIXED) + ("1w", "1M")
WEEK = 7 * DAY
WEEK_OFF = 4 * DAY  # 1970-01-05 00:00 UTC was a Monday


def days_from_civil(y, m, d):
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def civil_from_days(z):
    z += 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + (3 if mp < 10 else -9)
    return y + (m <= 2), m, d


def month_start(y, m):
    return days_from_civil(y, m, 1) * DAY


def floor_open(iv, t):
    """Open time of the candle of interval iv that contains instant t."""
    d = IV_FIXED.get(iv)
    if d is not None:
        return t - t % d
    if iv == "1w":
        return t - (t - WEEK_OFF) % WEEK
    y, m, _ = civil_from_days(t // DAY)
    return month_start(y, m)


def next_open(iv, o):
    d = IV_FIXED.get(iv)
    if d is not None:
        return o + d
    if iv == "1w":
        return o + WEEK
    y, m, _ = civil_from_days(o // DAY)
    return month_start(y + (m == 12), 1 if m == 12 else m + 1)


def prev_open(iv, o):
    d = IV_FIXED.get(iv)
    if d is not None:
        return o - d
    if iv == "1w":
        return o - WEEK
    y, m, _ = civil_from_days(o // DAY)
    return month_start(y - (m == 1), 12 if m == 1 else m - 1)


def ceil_open(iv, t):
    o = floor_open(iv, t)
    return o if o == t else next_open(iv, o)


def today_start_ms():
    """The UTC day NEWUSDT's listing counts from.  FAKE_BINANCE_TODAY_MS pins
    it, so that a test that crosses midnight sees the same universe in the
    server and in the truth CLIs it runs later."""
    pinned = os.environ.get("FAKE_BINANCE_TODAY_MS")
    if pinned:
        t = int(pinned)
    else:
        t = int(time.time() * 1000)
    return t - t % DAY


# --------------------------------------------------------------------------------------------
# Symbols
# --------------------------------------------------------------------------------------------

PERPETUAL_DELIVERY = 4133404800000  # 2100-12-25 08:00 UTC, what Binance puts on perpetuals
ONBOARD_DEFAULT = days_from_civil(2020, 1, 1) * DAY
ETH_FUNDING_4H_SINCE = days_from_civil(2025, 1, 1) * DAY  # fake's choice: ETHUSDT moved from 8 h to 4 h
DOGE_MAINT = (3 * HOUR, 30 * MIN)  # fake's choice: DOGEUSDT has no candles 03:00-03:30 UTC every day

# (tickSize, stepSize, minQty-ish, maxQty) tiers seen in the real exchangeInfo capture.
TIERS = (
    ("0.01", "0.001", "1000"),
    ("0.001", "0.01", "10000"),
    ("0.0001", "0.1", "100000"),
    ("0.00001", "1", "10000000"),
    ("0.00100", "1", "1000000"),
    ("0.0010", "1", "1000000"),
    ("0.000001", "1", "50000000"),
    ("0.1", "0.001", "500"),
)

# Known symbols: tickSize, stepSize, maxQty, price level, USDT notional per minute, typical trade size.
KNOWN = {
    "BTCUSDT": ("0.10", "0.001", "1000", 43000.0, 4_000_000.0, 2500.0),
    "ETHUSDT": ("0.01", "0.001", "10000", 2300.0, 2_000_000.0, 1500.0),
}

ASSETS = [
    {"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "-10000"},
    {"asset": "BTC", "marginAvailable": True, "autoAssetExchange": "-0.00100000"},
    {"asset": "BNB", "marginAvailable": False, "autoAssetExchange": "0"},
    {"asset": "ETH", "marginAvailable": True, "autoAssetExchange": "-5"},
    {"asset": "BUSD", "marginAvailable": True, "autoAssetExchange": "-10000"},
]


def _decimals(s):
    return len(s.split(".")[1]) if "." in s else 0


def _units(s, dec):
    """Decimal string -> integer number of 10**-dec units."""
    ip, _, fp = s.partition(".")
    return int(ip + fp.ljust(dec, "0")[:dec]) if dec else int(ip)


def fmt(v, d):
    """Integer number of 10**-d units -> fixed-decimal string (Binance style, trailing zeros kept)."""
    if d == 0:
        return str(v)
    s = str(v)
    if len(s) <= d:
        s = "0" * (d + 1 - len(s)) + s
    return s[:-d] + "." + s[-d:]


def _hfloats(key, n=16):
    h = hashlib.blake2b(key.encode(), digest_size=4 * n).digest()
    return [x * 2.3283064365386963e-10 for x in struct.unpack("<%dI" % n, h)]


class Symbol:
    def __init__(self, name, onboard, status="TRADING", contract="PERPETUAL", delivery=None,
                 end_ms=None, pair=None):
        self.name = name
        self.lower = name.lower()
        self.onboard = onboard
        self.status = status
        self.contract = contract
        self.delivery = delivery if delivery is not None else PERPETUAL_DELIVERY
        self.end_ms = end_ms  # no candle opens at or after this (delisted / delivered)
        self.maint = None  # (offset in the UTC day, length) of a daily maintenance window, in ms
        self.pair = pair or name.split("_")[0]
        base = self.pair[:-4] if self.pair.endswith("USDT") else self.pair
        self.base_asset = base
        u = _hfloats("sym|" + self.pair)
        known = KNOWN.get(self.pair)
        if known:
            tick, step, maxqty, price, npm, tsize = known
        else:
            tick, step, maxqty = TIERS[int(u[0] * len(TIERS))]
            td = float(tick)
            price = td * 10 ** (3.4 + 1.5 * u[1])
            npm = 10 ** (4.3 + 1.7 * u[2])
            tsize = 80 + 1500 * u[3]
        self.tick, self.step, self.maxqty = tick, step, maxqty
        self.pp = _decimals(tick)
        self.qp = _decimals(step)
        self.qd = self.pp + self.qp
        self.tick_i = _units(tick, self.pp)
        self.step_i = _units(step, self.qp)
        self.tick_f = float(tick)
        self.step_f = float(step)
        self.price = price
        self.npm = npm
        self.tsize = tsize
        self.ph = (u[4] * 6.283185307179586, u[5] * 6.283185307179586, u[6] * 6.283185307179586)
        self.amp = (0.18 + 0.15 * u[7], 0.05 + 0.05 * u[8], 0.01 + 0.02 * u[9])
        self.trade_base = int(u[10] * 1e9)
        # Funding schedule: [(from_ms, step_ms), ...]; None = no funding (delivery contracts).
        self.funding_sched = [(0, 8 * HOUR)] if contract == "PERPETUAL" else None

    def price_ticks(self, t):
        """Smooth deterministic 'fair price' path, in ticks."""
        a, b, c = self.amp
        p, q, r = self.ph
        x = (a * math.sin(t * 6.98131700797732e-11 + p)       # ~90 day period
             + b * math.sin(t * 1.03881299e-08 + q)           # ~7 day period
             + c * math.sin(t * 2.908882086657216e-07 + r))   # ~6 hour period
        return self.price * math.exp(x) / self.tick_f

    def first_open(self, iv):
        """First candle: the one containing the listing instant."""
        return floor_open(iv, self.onboard)

    def last_open(self, iv):
        return None if self.end_ms is None else floor_open(iv, self.end_ms - 1)

    def exchange_info(self):
        tick, step = self.tick, self.step
        min_price = fmt(max(1, int(self.price / self.tick_f / 60)) * self.tick_i, self.pp)
        return {
            "symbol": self.name,
            "pair": self.pair,
            "contractType": self.contract,
            "deliveryDate": self.delivery,
            "onboardDate": self.onboard,
            "status": self.status,
            "maintMarginPercent": "2.5000",
            "requiredMarginPercent": "5.0000",
            "baseAsset": self.base_asset,
            "quoteAsset": "USDT",
            "marginAsset": "USDT",
            "pricePrecision": self.pp,
            "quantityPrecision": self.qp,
            "baseAssetPrecision": 8,
            "quotePrecision": 8,
            "underlyingType": "COIN",
            "underlyingSubType": [],
            "settlePlan": 0,
            "triggerProtect": "0.0500",
            "liquidationFee": "0.012500",
            "marketTakeBound": "0.05",
            "maxMoveOrderLimit": 10000,
            "filters": [
                {"minPrice": min_price, "maxPrice": "4529764", "filterType": "PRICE_FILTER", "tickSize": tick},
                {"stepSize": step, "filterType": "LOT_SIZE", "maxQty": self.maxqty, "minQty": step},
                {"stepSize": step, "filterType": "MARKET_LOT_SIZE", "maxQty": self.maxqty, "minQty": step},
                {"limit": 200, "filterType": "MAX_NUM_ORDERS"},
                {"limit": 10, "filterType": "MAX_NUM_ALGO_ORDERS"},
                {"notional": "5", "filterType": "MIN_NOTIONAL"},
                {"multiplierDown": "0.9500", "multiplierUp": "1.0500", "multiplierDecimal": "4",
                 "filterType": "PERCENT_PRICE"},
            ],
            "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT",
                           "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET"],
            "timeInForce": ["GTC", "IOC", "FOK", "GTX"],
        }


def build_symbols(symbols_arg=None, synthetic=0):
    """The symbol universe; same arguments give the same universe for serve/truth/pages."""
    today = today_start_ms()
    out = []
    if symbols_arg:
        names = [s.strip() for s in symbols_arg.split(",") if s.strip()]
    else:
        names = ["BTCUSDT", "ETHUSDT", "NEWUSDT", "DOGEUSDT"]
    onboard_known = {"BTCUSDT": 1569398400000, "ETHUSDT": 1574812800000, "NEWUSDT": today - 10 * DAY}
    for n in names:
        out.append(Symbol(n, onboard_known.get(n, ONBOARD_DEFAULT)))
    for i in range(synthetic):
        out.append(Symbol("S%04dUSDT" % i, ONBOARD_DEFAULT))
        if i % 4 == 1:  # synthetic rule: every fourth synthetic perpetual funds every 4 h
            out[-1].funding_sched = [(0, 4 * HOUR)]
    for S in out:
        if S.name == "ETHUSDT":  # 8 h until ETH_FUNDING_4H_SINCE, 4 h from then on
            S.funding_sched = [(0, 8 * HOUR), (ETH_FUNDING_4H_SINCE, 4 * HOUR)]
        elif S.name == "NEWUSDT":  # 4 h from listing
            S.funding_sched = [(0, 4 * HOUR)]
        elif S.name == "DOGEUSDT":  # no candles in a daily maintenance window
            S.maint = DOGE_MAINT
    delist = today - 30 * DAY
    out.append(Symbol("OLDUSDT", ONBOARD_DEFAULT, status="SETTLING", delivery=delist, end_ms=delist))
    q_onboard = days_from_civil(2026, 6, 26) * DAY + 8 * 3_600_000
    q_delivery = days_from_civil(2026, 12, 25) * DAY + 8 * 3_600_000
    out.append(Symbol("BTCUSDT_261225", q_onboard, contract="CURRENT_QUARTER", delivery=q_delivery,
                      end_ms=q_delivery, pair="BTCUSDT"))
    seen, uniq = set(), []
    for s in out:
        if s.name not in seen:
            seen.add(s.name)
            uniq.append(s)
    return uniq


# --------------------------------------------------------------------------------------------
# Deterministic candles
# --------------------------------------------------------------------------------------------

ZERO_IVS = ("1m", "3m", "5m")


def candle_close(iv, o):
    return next_open(iv, o) - 1


def maint_cut(S, iv):
    """[lo, hi): offsets in the UTC day of the open times S has no candle at for interval iv
    (those whose [open, close) overlaps its daily maintenance window), or None. Intervals of
    1d and longer are unaffected; every shorter one divides the day."""
    if S.maint is None:
        return None
    d = IV_FIXED.get(iv)
    if d is None or d >= DAY:
        return None
    a, n = S.maint
    return a // d * d, -(-(a + n) // d) * d


def candle_exists(S, iv, o):
    cut = maint_cut(S, iv)
    return cut is None or not cut[0] <= o % DAY < cut[1]


def skip_up(S, iv, o):
    """The first open time >= o (an open time) at which S has a candle (maintenance skipped)."""
    cut = maint_cut(S, iv)
    if cut is not None and cut[0] <= o % DAY < cut[1]:
        return o - o % DAY + cut[1]
    return o


def skip_down(S, iv, o):
    """The last open time <= o (an open time) at which S has a candle (maintenance skipped)."""
    cut = maint_cut(S, iv)
    if cut is not None and cut[0] <= o % DAY < cut[1]:
        return o - o % DAY + cut[0] - IV_FIXED[iv]
    return o


def opens_up(S, iv, o, hi, limit):
    """Up to `limit` open times in [o, hi] at which S has a candle, ascending; arithmetic per
    run between two maintenance windows, not per candle."""
    d = IV_FIXED[iv]
    lo_cut, _ = maint_cut(S, iv)
    out = []
    while len(out) < limit:
        o = skip_up(S, iv, o)
        if o > hi:
            break
        day = o - o % DAY
        stop = day + lo_cut if o % DAY < lo_cut else day + DAY + lo_cut  # the next window
        e = min(hi + d, stop)
        cnt = min(limit - len(out), (e - o) // d)
        out.extend(range(o, o + cnt * d, d))
        o = e
    return out


def opens_down(S, iv, o, lo, limit):
    """The `limit` last open times in [lo, o] at which S has a candle, ascending."""
    d = IV_FIXED[iv]
    _, hi_cut = maint_cut(S, iv)
    out = []
    while len(out) < limit:
        o = skip_down(S, iv, o)
        if o < lo:
            break
        day = o - o % DAY
        start = day + hi_cut if o % DAY >= hi_cut else day - DAY + hi_cut  # after the last window
        cnt = min(limit - len(out), (o - max(lo, start)) // d + 1)
        out.extend(range(o, o - cnt * d, -d))
        o -= cnt * d
    out.reverse()
    return out


def gen_candle(S, iv, o, c_ms=None):
    """Final ('truth') values of a candle, as integers.

    Returns [open_ms, close_ms, O, H, L, C, v, q, n, V, Q, th, tl, ph, vsteps, Vsteps, vw]
    O..C in 10**-pp units, v/V in 10**-qp units, q/Q in 10**-(pp+qp) units.
    """
    if c_ms is None:
        c_ms = candle_close(iv, o)
    u = _hfloats("%s|%s|%d" % (S.name, iv, o))
    dmin = (c_ms + 1 - o) / 60000.0
    sig = min(0.0011 * math.sqrt(dmin), 0.12)
    p0 = S.price_ticks(o)
    if iv in ZERO_IVS and u[5] < 0.004:
        P = max(1, int(round(p0))) * S.tick_i
        return [o, c_ms, P, P, P, P, 0, 0, 0, 0, 0, 0.5, 0.5, 0.0, 0, 0, P]
    p1 = S.price_ticks(c_ms + 1)
    g1 = (u[0] + u[1] + u[2] - 1.5) * 2.0
    g2 = (u[1] + u[3] + u[4] - 1.5) * 2.0
    O = max(1, int(round(p0 * (1.0 + sig * 0.12 * g1))))
    C = max(1, int(round(p1 * (1.0 + sig * 0.45 * g2))))
    mx, mn = (O, C) if O >= C else (C, O)
    H = mx + int(mx * sig * 0.5 * u[6])
    L = max(1, mn - int(mn * sig * 0.5 * u[7]))
    ti = S.tick_i
    O, H, L, C = O * ti, H * ti, L * ti, C * ti
    notional = S.npm * dmin * (0.25 + 1.5 * u[8])
    vsteps = max(1, int(notional / (O * 10.0 ** -S.pp * S.step_f)))
    n = max(1, min(vsteps, int(notional / S.tsize * (0.6 + 0.8 * u[9]))))
    vw = L + int((H - L) * (0.25 + 0.5 * u[10]))
    Vsteps = int(vsteps * (0.3 + 0.4 * u[11]))
    si = S.step_i
    v = vsteps * si
    V = Vsteps * si
    return [o, c_ms, O, H, L, C, v, v * vw, n, V, V * vw,
            0.05 + 0.9 * u[12], 0.05 + 0.9 * u[13], u[14], vsteps, Vsteps, vw]


def partial_candle(S, k, f):
    """The forming candle at elapsed fraction f (0 <= f < 1) of candle k (from gen_candle).

    Prefix-like: volume/trades/taker volumes grow with f, high only rises and low only falls
    towards the final values, close stays inside [low, high]. At f >= 1 it is the truth."""
    if f >= 1.0:
        return k
    o, c_ms, O, H, L, C, v, q, n, V, Q, th, tl, ph, vsteps, Vsteps, vw = k
    if f < 0.0:
        f = 0.0
    vs = int(vsteps * f)
    if vs <= 0 or n == 0:
        return [o, c_ms, O, O, O, O, 0, 0, 0, 0, 0, th, tl, ph, 0, 0, vw]
    nf = max(1, min(vs, int(n * f)))
    ti = S.tick_i
    hf = O + int(((H - O) // ti) * min(1.0, f / th)) * ti
    lf = O - int(((O - L) // ti) * min(1.0, f / tl)) * ti
    # the (final) average trade price must lie inside the partial range once anything traded
    vw_hi = -(-vw // ti) * ti
    vw_lo = (vw // ti) * ti
    if hf < vw_hi:
        hf = vw_hi
    if lf > vw_lo:
        lf = vw_lo
    target = O + (C - O) * f + (H - L) * 0.3 * math.sin(6.283185307179586 * (2.0 * f + ph))
    cf = int(round(target / ti)) * ti
    cf = hf if cf > hf else (lf if cf < lf else cf)
    si = S.step_i
    vf = vs * si
    Vf = int(Vsteps * f) * si
    return [o, c_ms, O, hf, lf, cf, vf, vf * vw, nf, Vf, Vf * vw, th, tl, ph, vs, int(Vsteps * f), vw]


def candle_at(S, iv, o, now):
    """Candle with open time o as the exchange shows it at instant now (forming or final)."""
    k = gen_candle(S, iv, o)
    c_ms = k[1]
    if now <= c_ms:
        f = (now - o) / float(c_ms + 1 - o)
        return partial_candle(S, k, f), False
    return k, True


def row_json(S, k):
    pp, qp, qd = S.pp, S.qp, S.qd
    return '[%d,"%s","%s","%s","%s","%s",%d,"%s",%d,"%s","%s","0"]' % (
        k[0], fmt(k[2], pp), fmt(k[3], pp), fmt(k[4], pp), fmt(k[5], pp), fmt(k[6], qp),
        k[1], fmt(k[7], qd), k[8], fmt(k[9], qp), fmt(k[10], qd))


def row_csv(S, k):
    pp, qp, qd = S.pp, S.qp, S.qd
    return "%s,%d,%d,%s,%s,%s,%s,%s,%s,%d,%s,%s" % (
        S.name, k[0], k[1], fmt(k[2], pp), fmt(k[3], pp), fmt(k[4], pp), fmt(k[5], pp),
        fmt(k[6], qp), fmt(k[7], qd), k[8], fmt(k[9], qp), fmt(k[10], qd))


def trade_ids(S, k):
    """First/last trade id of a candle (simplification: derived from open time, not a global counter)."""
    if k[8] == 0:
        return -1, -1
    first = S.trade_base + k[0] // 10
    return first, first + k[8] - 1


def ws_kline_payload(S, iv, k, closed, event_ms):
    pp, qp, qd = S.pp, S.qp, S.qd
    f_id, l_id = trade_ids(S, k)
    return ('{"e":"kline","E":%d,"s":"%s","k":{"t":%d,"T":%d,"s":"%s","i":"%s","f":%d,"L":%d,'
            '"o":"%s","c":"%s","h":"%s","l":"%s","v":"%s","n":%d,"x":%s,"q":"%s","V":"%s","Q":"%s",'
            '"B":"0"}}') % (
        event_ms, S.name, k[0], k[1], S.name, iv, f_id, l_id,
        fmt(k[2], pp), fmt(k[5], pp), fmt(k[3], pp), fmt(k[4], pp), fmt(k[6], qp), k[8],
        "true" if closed else "false", fmt(k[7], qd), fmt(k[9], qp), fmt(k[10], qd))


def select_opens(S, iv, start, end, limit, now):
    """Open times a /fapi/v1/klines request returns (ascending).

    startTime given: candles with openTime >= startTime (a startTime inside a candle skips to the
    next one), at most `limit`, openTime <= endTime when given. Without startTime: the `limit`
    most recent candles with openTime <= endTime (or now). Never beyond the forming candle,
    never before the listing candle, never after delisting; never inside a maintenance window
    (a page skips it and still has `limit` rows when more exist)."""
    hi = floor_open(iv, now)
    last = S.last_open(iv)
    if last is not None and last < hi:
        hi = last
    if end is not None:
        e = floor_open(iv, end)
        if e < hi:
            hi = e
    first = S.first_open(iv)
    out = []
    d = IV_FIXED.get(iv)
    cut = maint_cut(S, iv)
    if start is not None:
        o = ceil_open(iv, start)
        if o < first:
            o = first
        if cut is not None:
            out = opens_up(S, iv, o, hi, limit)
        elif d is not None:
            if o <= hi:
                cnt = min(limit, (hi - o) // d + 1)
                out = list(range(o, o + cnt * d, d))
        else:
            while o <= hi and len(out) < limit:
                out.append(o)
                o = next_open(iv, o)
    else:
        if hi < first:
            return []
        if cut is not None:
            out = opens_down(S, iv, hi, first, limit)
        elif d is not None:
            cnt = min(limit, (hi - first) // d + 1)
            out = list(range(hi - (cnt - 1) * d, hi + 1, d))
        else:
            o = hi
            while o >= first and len(out) < limit:
                out.append(o)
                o = prev_open(iv, o)
            out.reverse()
    return out


def klines_body(S, iv, opens, now):
    rows = []
    for o in opens:
        k, _closed = candle_at(S, iv, o, now)
        rows.append(row_json(S, k))
    return "[" + ",".join(rows) + "]"


# --------------------------------------------------------------------------------------------
# 24 h ticker, funding history, open-interest history
# --------------------------------------------------------------------------------------------

def sfmt(v, d):
    """Signed fixed-decimal string."""
    return "-" + fmt(-v, d) if v < 0 else fmt(v, d)


def _hint(key, mod):
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little") % mod


def ticker_symbols(symbols):
    """What GET /fapi/v1/ticker/24hr lists: TRADING symbols (perpetuals and delivery contracts)."""
    return [S for S in symbols if S.status == "TRADING"]


def ticker_quote_volume(S, epoch):
    """24 h quoteVolume in cents: a pure function of (symbol, board epoch)."""
    u = _hfloats("qv|%s|%d" % (S.name, epoch), 2)
    return max(1, int(S.npm * 1440.0 * 10.0 ** (2.4 * (u[0] - 0.5)) * 100.0))


def ticker_quote_volume_str(S, epoch, pins=None):
    if pins and S.name in pins:
        return pins[S.name]
    return fmt(ticker_quote_volume(S, epoch), 2)


def ticker_json(S, epoch, pins, now):
    """One /fapi/v1/ticker/24hr object. quoteVolume depends on (symbol, epoch) or the pin only;
    the price fields follow the symbol's price path at `now`."""
    qv_str = ticker_quote_volume_str(S, epoch, pins)
    qv = float(qv_str)
    u = _hfloats("tk|%s|%d" % (S.name, now // 1000), 3)
    close_t = now - int(u[0] * 700)
    open_t = close_t - close_t % MIN - DAY
    ti = S.tick_i
    samples = [max(1, int(round(S.price_ticks(open_t + i * 900_000)))) for i in range(97)]
    o = max(1, int(round(S.price_ticks(open_t))))
    c = max(1, int(round(S.price_ticks(close_t))))
    hi = max(samples + [o, c])
    lo = min(samples + [o, c])
    hi += int(hi * 0.003 * u[1])
    lo = max(1, lo - int(lo * 0.003 * u[2]))
    avg = sum(samples) / len(samples)
    px = avg * S.tick_f
    vol_steps = max(1, int(qv / px / S.step_f)) if qv > 0 else 0
    if vol_steps:
        w = int(round(qv / (vol_steps * S.step_f) / S.tick_f))
        w = min(hi, max(lo, w))
    else:
        w = c
    count = max(1, int(qv / S.tsize)) if qv > 0 else 0
    last_id = S.trade_base + close_t // 10
    first_id = last_id - count + 1 if count else -1
    lq = max(1, int(S.tsize * (0.2 + u[1]) / px / S.step_f))
    pct = (c - o) * 100.0 / o
    return ('{"symbol":"%s","priceChange":"%s","priceChangePercent":"%.3f","weightedAvgPrice":"%s",'
            '"lastPrice":"%s","lastQty":"%s","openPrice":"%s","highPrice":"%s","lowPrice":"%s",'
            '"volume":"%s","quoteVolume":"%s","openTime":%d,"closeTime":%d,"firstId":%d,"lastId":%d,'
            '"count":%d}') % (
        S.name, sfmt((c - o) * ti, S.pp), pct, fmt(w * ti, S.pp),
        fmt(c * ti, S.pp), fmt(lq * S.step_i, S.qp), fmt(o * ti, S.pp), fmt(hi * ti, S.pp),
        fmt(lo * ti, S.pp), fmt(vol_steps * S.step_i, S.qp), qv_str, open_t, close_t,
        first_id, last_id if count else -1, count)


# ---- funding ---------------------------------------------------------------------------------

FUNDING_JITTER_MAX = 30          # fundingTime = boundary + 0..30 ms (same for every symbol at a boundary)
FUNDING_NOWINDOW_CAP = 500       # no startTime/endTime: at most 500 rows whatever limit says
MARK_PRICE_SINCE = days_from_civil(2023, 11, 1) * DAY  # older funding rows carry markPrice ""


def funding_jitter(b):
    return _hint("fj|%d" % b, FUNDING_JITTER_MAX + 1)


def funding_step_at(S, b):
    step = None
    for frm, st in S.funding_sched:
        if b >= frm:
            step = st
    return step


def funding_boundaries(S, lo, hi):
    """Funding instants b (exact boundaries, before jitter) with lo <= b <= hi, ascending.
    None before/at onboardDate, none at/after delisting."""
    sched = S.funding_sched
    if not sched:
        return []
    lo = max(lo, S.onboard + 1)
    if S.end_ms is not None:
        hi = min(hi, S.end_ms - 1)
    out = []
    for i, (frm, step) in enumerate(sched):
        to = sched[i + 1][0] - 1 if i + 1 < len(sched) else hi
        a, b = max(lo, frm), min(hi, to)
        if a > b:
            continue
        first = -(-a // step) * step
        out.extend(range(first, b + 1, step))
    return out


def funding_row(S, b):
    """(fundingTime, rate in 1e-8 units, markPrice string) of the event at boundary b."""
    step = funding_step_at(S, b)
    base = 10000 * step // (8 * HOUR)  # 0.01 % per 8 h interest baseline, pro rata
    u = _hfloats("fr|%s|%d" % (S.name, b), 3)
    if u[0] < 0.55:
        rate = base
    else:
        rate = base + int((u[1] - 0.35) * 8.0 * base * (1.0 + 4.0 * u[2] ** 4))
    rate = max(-300000, min(300000, rate))
    if b < MARK_PRICE_SINCE:
        mark = ""
    else:
        mark = fmt(max(1, int(round(S.price_ticks(b) * S.tick_f * 1e8))), 8)
    return b + funding_jitter(b), rate, mark


def funding_rows(S, lo_ft, hi_ft):
    """All funding rows of S with lo_ft <= fundingTime <= hi_ft."""
    out = []
    for b in funding_boundaries(S, lo_ft - FUNDING_JITTER_MAX, hi_ft):
        r = funding_row(S, b)
        if lo_ft <= r[0] <= hi_ft:
            out.append(r)
    return out


def select_funding(S, start, end, limit, now):
    """Rows GET /fapi/v1/fundingRate returns for one symbol (ascending, fundingTime <= now).
    start/end inclusive on the served fundingTime. More than `limit` between them: `limit`
    rows counting from startTime. Only endTime: the `limit` rows up to it. Neither: the most
    recent min(limit, FUNDING_NOWINDOW_CAP)."""
    if not S.funding_sched:
        return []
    hi = now if end is None else min(end, now)
    if start is not None:
        out = []
        lo = max(start, S.onboard + 1)
        span = limit * 8 * HOUR
        while lo <= hi and len(out) < limit:
            chunk = min(hi, lo + span)
            out.extend(funding_rows(S, lo, chunk))
            lo = chunk + 1
        return out[:limit]
    if end is None:
        limit = min(limit, FUNDING_NOWINDOW_CAP)
    rows = funding_rows(S, hi - (limit + 1) * 8 * HOUR, hi)
    return rows[-limit:]


def select_funding_all(symbols, start, end, limit, now):
    """GET /fapi/v1/fundingRate without symbol: every perpetual's rows merged, ordered by
    (fundingTime, symbol), then the same start/end/limit rule as for one symbol. Walks the
    time axis in chunks so that a wide window over many symbols stays cheap."""
    perps = [S for S in symbols if S.funding_sched]
    if not perps:
        return []
    hi = now if end is None else min(end, now)
    if start is None and end is None:
        limit = min(limit, FUNDING_NOWINDOW_CAP)
    span = max(8 * HOUR, (limit // len(perps) + 2) * 8 * HOUR)
    first = min(S.onboard for S in perps) + 1
    rows = []
    if start is not None:
        lo = max(start, first)
        while lo <= hi and len(rows) < limit:
            chunk = min(hi, lo + span)
            rows.extend((r[0], S.name, S, r) for S in perps for r in funding_rows(S, lo, chunk))
            lo = chunk + 1
        rows.sort(key=lambda x: x[:2])
        rows = rows[:limit]
    else:
        top = hi
        while top >= first and len(rows) < limit:
            chunk = max(first, top - span)
            rows.extend((r[0], S.name, S, r) for S in perps for r in funding_rows(S, chunk, top))
            top = chunk - 1
        rows.sort(key=lambda x: x[:2])
        rows = rows[-limit:]
    return [(x[2], x[3]) for x in rows]


def funding_row_json(S, r):
    return '{"symbol":"%s","fundingTime":%d,"fundingRate":"%s","markPrice":"%s"}' % (
        S.name, r[0], sfmt(r[1], 8), r[2])


def funding_row_csv(S, r):
    return "%s,%d,%s,%s" % (S.name, r[0], sfmt(r[1], 8), r[2])


# ---- open interest ----------------------------------------------------------------------------

OI_PERIODS = {"5m": 5 * MIN, "15m": 15 * MIN, "30m": 30 * MIN, "1h": HOUR, "2h": 2 * HOUR,
              "4h": 4 * HOUR, "6h": 6 * HOUR, "12h": 12 * HOUR, "1d": DAY}
OI_WINDOW = 30 * DAY
KNOWN_SUPPLY = {"BTCUSDT": 19_950_000.0, "ETHUSDT": 120_700_000.0}


def oi_window(S, p, now):
    """(first, last) timestamp openInterestHist can serve now for period length p (may be empty)."""
    lo = -(-(now - OI_WINDOW) // p) * p
    first_row = -(-S.onboard // p) * p
    lo = max(lo, first_row)
    hi = now - now % p
    if S.end_ms is not None:
        e = S.end_ms - 1
        hi = min(hi, e - e % p)
    return lo, hi


def oi_start_too_old(start, now):
    """startTime older than the start of the UTC day 30 days back: -1130 (some slack, like live)."""
    t = now - OI_WINDOW
    return start < t - t % DAY


def oi_point(S, T):
    """(sumOpenInterest, sumOpenInterestValue, CMCCirculatingSupply) strings at instant T.
    A function of (symbol, T) only: every period that has a row at T shows the same snapshot."""
    u = _hfloats("oi|%s|%d" % (S.name, T), 1)
    price = S.price_ticks(T) * S.tick_f
    a, b, _ = S.ph
    x = 0.25 * math.sin(T * 2.3e-9 + a) + 0.08 * math.sin(T * 4.1e-8 + b) + 0.004 * (u[0] - 0.5)
    notional = S.npm * 1440.0 * 0.6 * math.exp(x)
    steps = max(1, int(notional / price / S.step_f))
    oi8 = steps * S.step_i * 10 ** (8 - S.qp)
    mark8 = max(1, int(round(price * 1e8)))
    val8 = oi8 * mark8 // 10 ** 8
    supply = KNOWN_SUPPLY.get(S.pair) or 10 ** (6.0 + 3.0 * _hfloats("cmc|" + S.pair, 1)[0])
    sup3 = int(supply * 1000) + T // 600_000  # grows by 0.001 every 10 minutes
    return fmt(oi8, 8), fmt(val8, 8), fmt(sup3, 3)


def select_oi(S, p, start, end, limit, now):
    """Timestamps GET /futures/data/openInterestHist returns (ascending), within the 30-day window."""
    lo, hi = oi_window(S, p, now)
    if end is not None:
        hi = min(hi, end - end % p)
    if start is not None:
        a = max(lo, -(-start // p) * p)
        if a > hi:
            return []
        cnt = min(limit, (hi - a) // p + 1)
        return list(range(a, a + cnt * p, p))
    if hi < lo:
        return []
    cnt = min(limit, (hi - lo) // p + 1)
    return list(range(hi - (cnt - 1) * p, hi + 1, p))


def oi_row_json(S, T, ts_string=False):
    oi, val, sup = oi_point(S, T)
    ts = '"%d"' % T if ts_string else "%d" % T
    return ('{"symbol":"%s","sumOpenInterest":"%s","sumOpenInterestValue":"%s",'
            '"CMCCirculatingSupply":"%s","timestamp":%s}') % (S.name, oi, val, sup, ts)


# --------------------------------------------------------------------------------------------
# Bulk archives (data.binance.vision): monthly and daily kline zips, daily metrics zips
# --------------------------------------------------------------------------------------------
#
# GET /data/futures/um/monthly/klines/SYM/IV/SYM-IV-YYYY-MM.zip      (IV as REST, 1mo for 1M)
# GET /data/futures/um/daily/klines/SYM/IV/SYM-IV-YYYY-MM-DD.zip     (IV up to 1d)
# GET /data/futures/um/daily/metrics/SYM/SYM-metrics-YYYY-MM-DD.zip
# and each path + ".CHECKSUM" ("<sha256>  <file name>\n").  The rows are the REST truth
# (listing, delisting and maintenance windows included); see PROTOCOL.md for the choices.

ARCHIVE_PREFIX = "/data/futures/um/"
ARCHIVE_HEADER_SINCE = days_from_civil(2022, 5, 1) * DAY   # files of periods from here have a header
ARCHIVE_DAILY_DELAY = 8 * HOUR + 30 * MIN                  # a day's file appears at 08:30 the next day
KLINE_HEADER = ("open_time,open,high,low,close,volume,close_time,quote_volume,count,"
                "taker_buy_volume,taker_buy_quote_volume,ignore")
METRICS_HEADER = ("create_time,symbol,sum_open_interest,sum_open_interest_value,"
                  "count_toptrader_long_short_ratio,sum_toptrader_long_short_ratio,"
                  "count_long_short_ratio,sum_taker_long_short_vol_ratio")
ARCHIVE_RE = re.compile(
    r"^/data/futures/um/(?:(monthly|daily)/klines/([A-Z0-9]+)/([0-9a-z]+)/\2-\3-(\d{4})-(\d{2})(?:-(\d{2}))?"
    r"|daily/metrics/([A-Z0-9]+)/\7-metrics-(\d{4})-(\d{2})-(\d{2}))\.zip(\.CHECKSUM)?$")
DAILY_IVS = ("1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d")


def first_monday_after_month(y, m):
    """00:00 UTC of the first Monday of the month after (y, m): when a monthly file appears."""
    ny, nm = (y + 1, 1) if m == 12 else (y, m + 1)
    d0 = days_from_civil(ny, nm, 1)
    return (d0 + (7 - (d0 + 3) % 7) % 7) * DAY      # 1970-01-01 was a Thursday (weekday 3)


def s3_404(key):
    return ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchKey</Code>"
            "<Message>The specified key does not exist.</Message><Key>%s</Key>"
            "<RequestId>FAKE0000000000</RequestId><HostId>fake</HostId></Error>" % key).encode()


def archive_kline_rows(S, iv, start, end, drop_days=()):
    """CSV lines of S's closed candles with open time in [start, end), minus whole UTC days."""
    opens = select_opens(S, iv, start, end - 1, 10 ** 9, end + DAY)
    out = []
    pp, qp, qd = S.pp, S.qp, S.qd
    for o in opens:
        if o < start or o >= end:
            continue
        if drop_days and civil_from_days(o // DAY)[2] in drop_days:
            continue
        k = gen_candle(S, iv, o)
        out.append("%d,%s,%s,%s,%s,%s,%d,%s,%d,%s,%s,0" % (
            k[0], fmt(k[2], pp), fmt(k[3], pp), fmt(k[4], pp), fmt(k[5], pp), fmt(k[6], qp),
            k[1], fmt(k[7], qd), k[8], fmt(k[9], qp), fmt(k[10], qd)))
    return out


def archive_metrics_rows(S, day_start):
    """The day's 5-minute metrics rows: open interest as openInterestHist has it at that instant."""
    out = []
    lo = max(day_start, -(-S.onboard // (5 * MIN)) * (5 * MIN))
    hi = day_start + DAY
    if S.end_ms is not None:
        hi = min(hi, S.end_ms)
    for T in range(lo, hi, 5 * MIN):
        oi, val, _ = oi_point(S, T)
        u = _hfloats("metrics|%s|%d" % (S.name, T), 4)
        y, m, d = civil_from_days(T // DAY)
        sec = (T % DAY) // 1000
        out.append("%04d-%02d-%02d %02d:%02d:%02d,%s,%s,%s,%.8f,%.8f,%.8f,%.8f" % (
            y, m, d, sec // 3600, sec // 60 % 60, sec % 60, S.name, oi, val,
            0.5 + 2.5 * u[0], 0.5 + 2.5 * u[1], 0.5 + 2.5 * u[2], 0.5 + 2.5 * u[3]))
    return out


def archive_zip(name, lines, header, stored):
    import io
    import zipfile
    buf = io.BytesIO()
    body = ((header + "\n") if header else "") + "".join(l + "\n" for l in lines)
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED) as z:
        info = zipfile.ZipInfo(name[:-4] + ".csv", date_time=(2020, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
        z.writestr(info, body)
    return buf.getvalue()


def archive_file(symbols, path, now, faults):
    """(status, body bytes, content type) of an archive path at instant now.
    faults: {"missing": [file names], "bad_checksum": [...], "truncate": [...],
             "incomplete": {file name: [days of the month left out]}, "delay_days": n}."""
    m = ARCHIVE_RE.match(path)
    key = path.lstrip("/")
    if not m:
        return 404, s3_404(key), "application/xml"
    checksum = m.group(11) is not None
    if m.group(7):
        S = find_symbol(symbols, m.group(7))
        y, mo, d = int(m.group(8)), int(m.group(9)), int(m.group(10))
        kind, iv, code = "metrics", None, None
    else:
        S = find_symbol(symbols, m.group(2))
        code = m.group(3)
        iv = "1M" if code == "1mo" else code
        y, mo = int(m.group(4)), int(m.group(5))
        d = int(m.group(6)) if m.group(6) else None
        kind = m.group(1)
        if iv not in INTERVALS or code == "1M" or (kind == "daily") != (d is not None) or \
                (kind == "daily" and iv not in DAILY_IVS):
            return 404, s3_404(key), "application/xml"
    if S is None or not 1 <= mo <= 12 or (d is not None and not 1 <= d <= 31):
        return 404, s3_404(key), "application/xml"
    if d is not None:
        start = days_from_civil(y, mo, d) * DAY
        if civil_from_days(start // DAY) != (y, mo, d):
            return 404, s3_404(key), "application/xml"
        end = start + DAY
        published = end + ARCHIVE_DAILY_DELAY
    else:
        start = days_from_civil(y, mo, 1) * DAY
        end = days_from_civil(*((y + 1, 1, 1) if mo == 12 else (y, mo + 1, 1))) * DAY
        published = first_monday_after_month(y, mo)
    published += int(faults.get("delay_days", 0)) * DAY
    name = key.rsplit("/", 1)[1]
    zname = name[:-9] if checksum else name
    # nothing before the listing, or after the delisting, is published
    last = S.end_ms if S.end_ms is not None else None
    if now < published or end <= S.onboard or (last is not None and start >= last) or \
            zname in faults.get("missing", ()):
        return 404, s3_404(key), "application/xml"
    if kind == "metrics":
        body = archive_zip(zname, archive_metrics_rows(S, start), METRICS_HEADER, d % 2 == 1)
    else:
        lines = archive_kline_rows(S, iv, start, end, tuple(faults.get("incomplete", {}).get(zname, ())))
        header = KLINE_HEADER if start >= ARCHIVE_HEADER_SINCE else None
        body = archive_zip(zname, lines, header, ((d or mo) % 2) == 1)
    if checksum:
        digest = hashlib.sha256(body).hexdigest()
        if zname in faults.get("bad_checksum", ()):
            digest = hashlib.sha256(body + b"x").hexdigest()
        return 200, ("%s  %s\n" % (digest, zname)).encode(), "text/plain"
    return 200, body, "application/zip"


# --------------------------------------------------------------------------------------------
# Offline CLIs: truth / pages / ticker / funding / oi
# --------------------------------------------------------------------------------------------

def find_symbol(symbols, name):
    for s in symbols:
        if s.name == name:
            return s
    return None


def cmd_truth(args):
    symbols = build_symbols(args.symbols, args.synthetic)
    S = find_symbol(symbols, args.symbol)
    if S is None or args.interval not in INTERVALS:
        print("unknown symbol or interval", file=sys.stderr)
        return 2
    now = args.now if args.now is not None else int(time.time() * 1000)
    iv = args.interval
    o = max(ceil_open(iv, args.start_ms), S.first_open(iv))
    last = S.last_open(iv)
    out = []
    w = out.append
    end = args.end_ms
    while True:
        o = skip_up(S, iv, o)
        if o >= end or (last is not None and o > last):
            break
        c_ms = candle_close(iv, o)
        if c_ms >= now:
            break
        w(row_csv(S, gen_candle(S, iv, o, c_ms)))
        o = c_ms + 1
    if out:
        sys.stdout.write("\n".join(out) + "\n")
    sys.stdout.flush()
    return 0


def cmd_pages(args):
    symbols = build_symbols(args.symbols, args.synthetic)
    S = find_symbol(symbols, args.symbol)
    if S is None or args.interval not in INTERVALS:
        print("unknown symbol or interval", file=sys.stderr)
        return 2
    iv = args.interval
    limit = max(1, min(1500, args.limit))
    o = max(ceil_open(iv, args.start_ms), S.first_open(iv))
    remaining = args.count
    buf = []
    while remaining > 0:
        rows = []
        for _ in range(min(limit, remaining)):
            o = skip_up(S, iv, o)
            c_ms = candle_close(iv, o)
            rows.append(row_json(S, gen_candle(S, iv, o, c_ms)))
            o = c_ms + 1
        remaining -= len(rows)
        buf.append("[" + ",".join(rows) + "]")
        if len(buf) >= 64:
            sys.stdout.write("\n".join(buf) + "\n")
            buf = []
    if buf:
        sys.stdout.write("\n".join(buf) + "\n")
    sys.stdout.flush()
    return 0


def cmd_ticker(args):
    """CSV symbol,quoteVolume of GET /fapi/v1/ticker/24hr (no symbol), in the endpoint's order."""
    symbols = build_symbols(args.symbols, args.synthetic)
    out = ["%s,%s" % (S.name, ticker_quote_volume_str(S, args.board_epoch))
           for S in ticker_symbols(symbols)]
    if out:
        sys.stdout.write("\n".join(out) + "\n")
    sys.stdout.flush()
    return 0


def cmd_funding(args):
    """CSV symbol,funding_time_ms,funding_rate,mark_price: every row /fapi/v1/fundingRate serves
    with START_MS <= fundingTime <= END_MS (both inclusive) and fundingTime <= now."""
    symbols = build_symbols(args.symbols, args.synthetic)
    S = find_symbol(symbols, args.symbol)
    if S is None:
        print("unknown symbol", file=sys.stderr)
        return 2
    now = args.now if args.now is not None else int(time.time() * 1000)
    rows = funding_rows(S, args.start_ms, min(args.end_ms, now)) if S.funding_sched else []
    if rows:
        sys.stdout.write("\n".join(funding_row_csv(S, r) for r in rows) + "\n")
    sys.stdout.flush()
    return 0


def cmd_oi(args):
    """CSV symbol,timestamp_ms,sum_open_interest,sum_open_interest_value: every row
    /futures/data/openInterestHist can serve now with START_MS <= timestamp <= END_MS."""
    symbols = build_symbols(args.symbols, args.synthetic)
    S = find_symbol(symbols, args.symbol)
    p = OI_PERIODS.get(args.period)
    if S is None or p is None:
        print("unknown symbol or period", file=sys.stderr)
        return 2
    now = args.now if args.now is not None else int(time.time() * 1000)
    lo, hi = oi_window(S, p, now)
    if args.archive:
        # the daily metrics archives: from the listing on, no REST window
        lo = -(-S.onboard // p) * p
    a = max(lo, -(-args.start_ms // p) * p)
    b = min(hi, args.end_ms - args.end_ms % p)
    out = []
    for T in range(a, b + 1, p):
        oi, val, _ = oi_point(S, T)
        out.append("%s,%d,%s,%s" % (S.name, T, oi, val))
    if out:
        sys.stdout.write("\n".join(out) + "\n")
    sys.stdout.flush()
    return 0


# --------------------------------------------------------------------------------------------
# Server state: rate limits, faults, stats
# --------------------------------------------------------------------------------------------

# Per-endpoint IP request limits, separate from the weight budget: path -> (name, window ms).
ENDPOINT_LIMITS = {"funding": ("/fapi/v1/fundingRate", 300_000, "funding_limit"),
                   "oi": ("/futures/data/openInterestHist", 300_000, "oi_limit")}
ENDPOINT_BY_PATH = {v[0]: k for k, v in ENDPOINT_LIMITS.items()}
SERVER_CONFIG_INTS = ("board_epoch", "funding_limit", "oi_limit", "oi_timestamp_as_string", "oi_weight_header",
                      "ws_subscribe_delay_ms", "ws_close_every_ms", "ws_forming")
# live closes (ws_close_every_ms) replay the candles from this far back on, one a burst
LIVE_CLOSE_BACK_MS = 90 * DAY

REST_FAULTS = ("reset", "status_5xx", "status_429", "garbage", "truncate", "truncate_json", "stall", "slow")
WS_FAULTS = ("ws_drop", "ws_garbage", "ws_duplicate", "ws_stall")
# drawn after REST_FAULTS, and only when set, so that adding them changed no
# seeded sequence of the older faults
MUTATE_FAULTS = ("mutate",)
MUTATIONS = ("nul", "bad_utf8", "escaped_nul", "deep_nesting", "huge_number", "byte_flip")


def mutate_body(rng, data):
    """A 200 answer's body, corrupted the way a broken proxy or exchange might: one of
    MUTATIONS, picked by rng. Returns (mutation, new body)."""
    kind = MUTATIONS[rng.randrange(len(MUTATIONS))]
    pos = rng.randrange(len(data) + 1) if data else 0
    q = data.find(b'"')
    if kind == "nul":
        return kind, data[:pos] + b"\x00" + data[pos:]
    if kind in ("bad_utf8", "escaped_nul"):
        ins = (b"\xc3", b"\xff\xfe", b"\xed\xa0\x80", b"\xc0\xaf")[rng.randrange(4)] \
            if kind == "bad_utf8" else b"\\u0000"
        at = q + 1 if q >= 0 else pos
        return kind, data[:at] + ins + data[at:]
    if kind == "deep_nesting":
        return kind, b"[" * 100000 + data
    if kind == "huge_number":
        m = re.search(rb"\d+", data)
        big = (b"1e400", b"9" * 400, b"-1e400", b"1e-400", b"18446744073709551616")[rng.randrange(5)]
        if m is None:
            return kind, big
        return kind, data[:m.start()] + big + data[m.end():]
    if not data:
        return kind, b"\x80"
    # the high bit: a flipped ASCII byte is never valid UTF-8, so the corruption is
    # detectable (a flipped digit would be a wrong value no parser can see)
    i = min(pos, len(data) - 1)
    return kind, data[:i] + bytes([data[i] ^ 0x80]) + data[i + 1:]
FAULT_PARAMS = ("slow_ms", "stall_ms", "ws_stall_ms", "seed", "paths", "script")


def err_body(code, msg):
    return json.dumps({"code": code, "msg": msg}, separators=(",", ":"))


def err_body_data(code, msg):
    """/futures/data/* errors: live captures show "msg" before "code"."""
    return json.dumps({"msg": msg, "code": code}, separators=(",", ":"))


QV_RE = re.compile(r"^[0-9]{1,20}(\.[0-9]{1,8})?$")


class Stats:
    def __init__(self):
        self.reset()

    def reset(self):
        self.requests = {}
        self.statuses = {}
        self.klines_rows = 0
        self.weight_total = 0
        self.rate_limited_429 = 0
        self.injected_429 = 0
        self.banned_418 = 0
        self.faults = {k: 0 for k in REST_FAULTS + WS_FAULTS + MUTATE_FAULTS}
        self.mutations = {k: 0 for k in MUTATIONS}
        self.ws_connections_total = 0
        self.ws_frames_sent = 0
        self.ws_kline_frames_sent = 0
        self.ws_messages_in = 0
        self.ws_rate_drops = 0
        self.ws_lifetime_closes = 0
        self.ws_pong_timeouts = 0
        self.ws_firehose_frames = 0
        self.ws_live_close_frames = 0
        self.ticker_rows = 0
        self.funding_rows = 0
        self.oi_rows = 0
        self.endpoint_limited_429 = {k: 0 for k in ENDPOINT_LIMITS}

    def status(self, code):
        k = str(code)
        self.statuses[k] = self.statuses.get(k, 0) + 1


class IpLimits:
    """The rate-limit state of one client IP, as Binance keys its limits by IP: the minute
    weight window, the 429s before a ban, the ban, the endpoints' own windows; and what that
    IP was served (GET /_fake/stats `by_ip`)."""

    def __init__(self):
        self.win_minute = -1
        self.win_weight = 0
        self.win_429 = 0
        self.banned_until = 0
        self.ep_win = {k: [-1, 0] for k in ENDPOINT_LIMITS}  # name -> [window id, requests]
        self.requests = 0
        self.weight_total = 0
        self.rate_limited_429 = 0
        self.klines_rows = 0
        self.klines_symbols = {}  # symbol -> kline rows served

    def roll(self, now):
        m = now // 60000
        if m != self.win_minute:
            self.win_minute = m
            self.win_weight = 0
            self.win_429 = 0

    def minute_weight(self, now):
        """Weight used in the minute of `now` (0 if this IP sent nothing in it)."""
        return self.win_weight if self.win_minute == now // 60000 else 0

    def endpoint_count(self, name, now):
        """Count one request against an endpoint's own IP limit. -> (count in window, window end ms)."""
        _path, length, _attr = ENDPOINT_LIMITS[name]
        w = self.ep_win[name]
        wid = now // length
        if w[0] != wid:
            w[0], w[1] = wid, 0
        w[1] += 1
        return w[1], (wid + 1) * length

    def endpoint_requests(self, name, now):
        """Requests in the endpoint's current window (0 if none in it)."""
        w = self.ep_win[name]
        return w[1] if w[0] == now // ENDPOINT_LIMITS[name][1] else 0

    def served_klines(self, S, n):
        self.klines_rows += n
        self.klines_symbols[S.name] = self.klines_symbols.get(S.name, 0) + n


class Server:
    def __init__(self, args):
        self.args = args
        self.symbols = build_symbols(args.symbols, args.synthetic)
        self.by_name = {s.name: s for s in self.symbols}
        self.archive_faults = {}
        self.archive_requests = 0
        self.archive_bytes = 0
        self.archive_404 = 0
        self.by_lower = {s.lower: s for s in self.symbols}
        self.weight_limit = args.weight_limit
        self.ban_after = args.ban_after
        self.ban_seconds = args.ban_seconds
        self.clock_offset_ms = 0
        self.ws_interval_ms = args.ws_interval_ms
        self.ws_max_streams = args.ws_max_streams
        self.ws_max_lifetime = args.ws_max_lifetime
        self.ws_ping_interval = args.ws_ping_interval
        self.ws_pong_timeout = args.ws_pong_timeout
        self.ws_max_msg_rate = args.ws_max_msg_rate
        self.board_epoch = args.board_epoch
        self.quote_volumes = {}
        self.funding_limit = args.funding_limit
        self.oi_limit = args.oi_limit
        self.oi_timestamp_as_string = 0
        self.oi_weight_header = 1
        self.ws_subscribe_delay_ms = 0
        self.ws_close_every_ms = 0
        self.ws_forming = 1
        self.live_close_next = {}  # stream -> open time of its next live close
        self.stats = Stats()
        self.ips = {}  # client IP -> IpLimits, made on its first REST request
        self.conns = set()
        self.set_faults(json.loads(args.faults) if args.faults else {})

    # ---- clock / weight ---------------------------------------------------------------------
    def now(self):
        return int(time.time() * 1000) + self.clock_offset_ms

    def limits(self, ip):
        lim = self.ips.get(ip)
        if lim is None:
            lim = self.ips[ip] = IpLimits()
        return lim

    def reset(self):
        self.stats.reset()
        self.ips = {}
        self.archive_requests = 0
        self.archive_bytes = 0
        self.archive_404 = 0

    def live_close_candle(self, S, iv, stream, now):
        """The next candle a live close of `stream` announces: consecutive closed candles from
        LIVE_CLOSE_BACK_MS back on, a new row each time (whatever connection asks), starting
        over before it reaches the present. -> gen_candle list or None."""
        o = self.live_close_next.get(stream)
        if o is None or o >= prev_open(iv, floor_open(iv, now)):
            o = max(floor_open(iv, now - LIVE_CLOSE_BACK_MS), S.first_open(iv))
        o = skip_up(S, iv, o)
        last = S.last_open(iv)
        if last is not None and o > last:
            return None
        k = gen_candle(S, iv, o)
        self.live_close_next[stream] = k[1] + 1
        return k

    # ---- faults -----------------------------------------------------------------------------
    def set_archive_faults(self, f):
        if not isinstance(f, dict):
            raise ValueError("archive faults must be a JSON object")
        for k, v in f.items():
            if k in ("missing", "bad_checksum", "truncate"):
                if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                    raise ValueError("archive fault %s must be a list of file names" % k)
            elif k == "incomplete":
                if not isinstance(v, dict) or not all(
                        isinstance(d, list) and all(isinstance(x, int) and 1 <= x <= 31 for x in d)
                        for d in v.values()):
                    raise ValueError("archive fault incomplete must be {file name: [days 1-31]}")
            elif k == "delay_days":
                if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                    raise ValueError("archive fault delay_days must be an integer >= 0")
            else:
                raise ValueError("unknown archive fault %s" % k)
        self.archive_faults = dict(f)

    def set_faults(self, f):
        if not isinstance(f, dict):
            raise ValueError("faults must be a JSON object")
        for k, v in f.items():
            if k in REST_FAULTS or k in WS_FAULTS or k in MUTATE_FAULTS:
                if not isinstance(v, (int, float)) or not 0 <= v <= 1:
                    raise ValueError("fault %s must be a probability in [0,1]" % k)
            elif k not in FAULT_PARAMS:
                raise ValueError("unknown fault key %s" % k)
        self.faults = dict(f)
        self.script = list(f.get("script") or [])
        for s in self.script:
            if s not in REST_FAULTS and s not in MUTATE_FAULTS:
                raise ValueError("unknown scripted fault %s" % s)
        self.rng = random.Random(f.get("seed", self.args.seed))
        self.ws_rng = random.Random((f.get("seed", self.args.seed) or 0) + 7919)

    def draw_faults(self, path):
        """Which REST faults hit this request. One draw per fault type per request (deterministic)."""
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

    def by_ip_json(self, now):
        streams = {}
        for c in self.conns:
            streams.setdefault(c.ip, set()).update(c.subs)
        out = {}
        for ip in sorted(set(self.ips) | set(streams)):
            lim = self.ips.get(ip) or IpLimits()
            out[ip] = {
                "weight_total": lim.weight_total,
                "weight_current_minute": lim.minute_weight(now),
                "banned_until": lim.banned_until,
                "rate_limited_429": lim.rate_limited_429,
                "requests": lim.requests,
                "klines_rows": lim.klines_rows,
                "klines_symbols": dict(lim.klines_symbols),
                "ws_streams": sorted(streams.get(ip, ())),
            }
        return out

    def stats_json(self):
        st = self.stats
        now = self.now()
        ips = list(self.ips.values())
        return {
            "requests": st.requests,
            "responses_by_status": st.statuses,
            "klines_rows": st.klines_rows,
            "weight_total": st.weight_total,
            "weight_current_minute": sum(lim.minute_weight(now) for lim in ips),
            "rate_limited_429": st.rate_limited_429,
            "injected_429": st.injected_429,
            "banned_418": st.banned_418,
            "banned_until": max([lim.banned_until for lim in ips], default=0),
            "faults": st.faults,
            "mutations": st.mutations,
            "ws": {
                "connections_total": st.ws_connections_total,
                "connections_open": len(self.conns),
                "subscriptions": sum(len(c.subs) for c in self.conns),
                "frames_sent": st.ws_frames_sent,
                "kline_frames_sent": st.ws_kline_frames_sent,
                "messages_in": st.ws_messages_in,
                "rate_drops": st.ws_rate_drops,
                "lifetime_closes": st.ws_lifetime_closes,
                "pong_timeouts": st.ws_pong_timeouts,
                "firehose_frames": st.ws_firehose_frames,
                "live_close_frames": st.ws_live_close_frames,
            },
            "ticker_rows": st.ticker_rows,
            "funding_rows": st.funding_rows,
            "oi_rows": st.oi_rows,
            "endpoint_limited_429": dict(st.endpoint_limited_429),
            "endpoint_window_requests": {k: sum(lim.endpoint_requests(k, now) for lim in ips)
                                         for k in ENDPOINT_LIMITS},
            "by_ip": self.by_ip_json(now),
        }

    def config_json(self):
        return {
            "weight_limit": self.weight_limit, "ban_after": self.ban_after,
            "ban_seconds": self.ban_seconds, "clock_offset_ms": self.clock_offset_ms,
            "ws_interval_ms": self.ws_interval_ms, "ws_max_streams": self.ws_max_streams,
            "ws_max_lifetime": self.ws_max_lifetime, "ws_ping_interval": self.ws_ping_interval,
            "ws_pong_timeout": self.ws_pong_timeout, "ws_max_msg_rate": self.ws_max_msg_rate,
            "board_epoch": self.board_epoch, "quote_volumes": dict(self.quote_volumes),
            "funding_limit": self.funding_limit, "oi_limit": self.oi_limit,
            "oi_timestamp_as_string": self.oi_timestamp_as_string,
            "oi_weight_header": self.oi_weight_header,
            "ws_subscribe_delay_ms": self.ws_subscribe_delay_ms,
            "ws_close_every_ms": self.ws_close_every_ms, "ws_forming": self.ws_forming,
        }

    def set_config(self, cfg):
        if not isinstance(cfg, dict):
            raise ValueError("config must be a JSON object")
        known = self.config_json()
        for k, v in cfg.items():
            if k not in known:
                raise ValueError("unknown config key %s" % k)
            if k == "quote_volumes":
                if not isinstance(v, dict):
                    raise ValueError("quote_volumes must be an object {symbol: \"decimal\"}")
                for sym, qv in v.items():
                    if sym not in self.by_name:
                        raise ValueError("quote_volumes: unknown symbol %s" % sym)
                    if not isinstance(qv, str) or not QV_RE.match(qv):
                        raise ValueError("quote_volumes: %s must be a decimal string" % sym)
            elif not isinstance(v, (int, float)) or isinstance(v, bool):
                raise ValueError("config %s must be a number" % k)
            elif k in SERVER_CONFIG_INTS and v != int(v):
                raise ValueError("config %s must be an integer" % k)
        for k, v in cfg.items():
            if k == "quote_volumes":
                self.quote_volumes = dict(v)
            else:
                setattr(self, k, int(v) if k in SERVER_CONFIG_INTS else v)


# --------------------------------------------------------------------------------------------
# REST
# --------------------------------------------------------------------------------------------

def klines_weight(limit):
    if limit < 100:
        return 1
    if limit < 500:
        return 2
    if limit <= 1000:
        return 5
    return 10


DIGITS = "^[0-9]{1,20}$"


def parse_klines(srv, q):
    """Validate /fapi/v1/klines params. Returns (error_body or None, parsed dict)."""
    for k in q.keys():
        if len(q.getall(k)) > 1:
            return err_body(-1101, "Duplicate values for a parameter detected."), None
    symbol = q.get("symbol", "")
    interval = q.get("interval", "")
    if not symbol:
        return err_body(-1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."), None
    if not interval:
        return err_body(-1102, "Mandatory parameter 'interval' was not sent, was empty/null, or malformed."), None
    nums = {}
    for name in ("startTime", "endTime", "limit"):
        v = q.get(name, "")
        if v == "":
            nums[name] = None
            continue
        if not v.isdigit() or len(v) > 20 or not v.isascii():
            return err_body(-1100, "Illegal characters found in parameter '%s'; legal range is '%s'." % (name, DIGITS)), None
        nums[name] = int(v)
    if interval not in INTERVALS:
        return err_body(-1120, "Invalid interval."), None
    S = srv.by_name.get(symbol)
    if S is None:
        return err_body(-1121, "Invalid symbol."), None
    limit = 500 if nums["limit"] is None else nums["limit"]
    if limit < 1 or limit > 1500:
        return err_body(-1130, "Data sent for parameter 'limit' is not valid."), None
    st, en = nums["startTime"], nums["endTime"]
    if st is not None and en is not None and st > en:
        return err_body(-1023, "Start time is greater than end time."), None
    return None, {"S": S, "iv": interval, "start": st, "end": en, "limit": limit}


def _limit_for_weight(q):
    v = q.get("limit", "")
    if v.isdigit():
        return int(v)
    return 500


def parse_nums(q, names):
    """Shared checks: duplicate parameters (-1101), digits-only numbers (-1100).
    Returns (error_body or None, {name: int or None})."""
    for k in q.keys():
        if len(q.getall(k)) > 1:
            return err_body(-1101, "Duplicate values for a parameter detected."), None
    nums = {}
    for name in names:
        v = q.get(name, "")
        if v == "":
            nums[name] = None
            continue
        if not v.isdigit() or len(v) > 20 or not v.isascii():
            return err_body(-1100, "Illegal characters found in parameter '%s'; legal range is '%s'." % (name, DIGITS)), None
        nums[name] = int(v)
    return None, nums


def parse_ticker(srv, q):
    err, _ = parse_nums(q, ())
    if err:
        return err, None
    sym = q.get("symbol", "")
    if not sym:
        return None, None
    S = srv.by_name.get(sym)
    if S is None or S.status != "TRADING":
        return err_body(-1121, "Invalid symbol."), None
    return None, S


def parse_funding(srv, q):
    err, nums = parse_nums(q, ("startTime", "endTime", "limit"))
    if err:
        return err, None
    sym = q.get("symbol", "")
    S = None
    if sym:
        S = srv.by_name.get(sym)
        if S is None:
            return err_body(-1121, "Invalid symbol."), None
    limit = 100 if nums["limit"] is None else nums["limit"]
    if limit < 1 or limit > 1000:
        return err_body(-1130, "Data sent for parameter 'limit' is not valid."), None
    st, en = nums["startTime"], nums["endTime"]
    if st is not None and en is not None and st > en:
        return err_body(-1023, "Start time is greater than end time."), None
    return None, {"S": S, "start": st, "end": en, "limit": limit}


def parse_oi(srv, q, now):
    err, nums = parse_nums(q, ("startTime", "endTime", "limit"))
    if err:
        return json.dumps(dict(reversed(list(json.loads(err).items()))), separators=(",", ":")), None
    sym = q.get("symbol", "")
    period = q.get("period", "")
    if not sym:
        return err_body_data(-1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."), None
    if not period:
        return err_body_data(-1102, "Mandatory parameter 'period' was not sent, was empty/null, or malformed."), None
    S = srv.by_name.get(sym)
    if S is None:
        return err_body_data(-1121, "Invalid symbol."), None
    p = OI_PERIODS.get(period)
    if p is None:
        return err_body_data(-1130, "parameter 'period' is invalid."), None
    limit = 30 if nums["limit"] is None else nums["limit"]
    if limit < 1 or limit > 500:
        return err_body_data(-1130, "parameter 'limit' is invalid."), None
    st, en = nums["startTime"], nums["endTime"]
    if st is not None and en is not None and st > en:
        return err_body_data(-1023, "Start time is greater than end time."), None
    if st is not None and oi_start_too_old(st, now):
        return err_body_data(-1130, "parameter 'startTime' is invalid."), None
    return None, {"S": S, "p": p, "start": st, "end": en, "limit": limit}


def route_weight(path, q):
    if path == "/fapi/v1/klines":
        return klines_weight(_limit_for_weight(q))
    if path == "/fapi/v1/ticker/24hr":
        return 1 if q.get("symbol", "") else 40
    if path in ENDPOINT_BY_PATH:
        return 0  # own request limits (ENDPOINT_LIMITS) instead of weight
    return 1


GARBAGE = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n",
    b"\x00\x9f\x92\x96garbage\xff\xfe not json at all",
    b"{\"code\":0,\"msg\":\"ok\"}}}]]] trailing junk",
    b"OK",
)


def make_app(srv):
    from aiohttp import web, WSMsgType

    def headers(lim, extra=None, weight_header=True):
        """Response headers; the used weight is that of the requesting IP (`lim`)."""
        h = {"X-MBX-USED-WEIGHT-1M": str(lim.win_weight)} if weight_header else {}
        if extra:
            h.update(extra)
        return h

    def jresp(lim, status, body, extra=None, weight_header=True):
        srv.stats.status(status)
        b = body.encode() if isinstance(body, str) else body
        return web.Response(status=status, body=b, content_type="application/json",
                            headers=headers(lim, extra, weight_header))

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
        # every limit is the client IP's own (Binance keys them by IP)
        ip = request.remote or "127.0.0.1"
        lim = srv.limits(ip)
        lim.requests += 1
        lim.roll(now)
        weight = route_weight(path, q)
        lim.win_weight += weight
        lim.weight_total += weight
        st.weight_total += weight
        ep = ENDPOINT_BY_PATH.get(path)
        if ep:
            ep_count, ep_end = lim.endpoint_count(ep, now)
        wh = not (ep == "oi" and not srv.oi_weight_header)

        def reply(status, body, extra=None):
            return jresp(lim, status, body, extra, wh)

        # IP ban (418) then weight limit (429)
        if lim.banned_until > now:
            st.banned_418 += 1
            return reply(418, err_body(-1003, "Way too many requests; IP(%s) banned until %d. Please use the websocket for live updates to avoid bans." % (ip, lim.banned_until)),
                         {"Retry-After": str(max(1, -(-(lim.banned_until - now) // 1000)))})
        if weight and lim.win_weight > srv.weight_limit:
            if lim.win_429 >= srv.ban_after:
                lim.banned_until = now + srv.ban_seconds * 1000
                st.banned_418 += 1
                return reply(418, err_body(-1003, "Way too many requests; IP(%s) banned until %d. Please use the websocket for live updates to avoid bans." % (ip, lim.banned_until)),
                             {"Retry-After": str(max(1, srv.ban_seconds))})
            lim.win_429 += 1
            lim.rate_limited_429 += 1
            st.rate_limited_429 += 1
            retry = max(1, -(-((lim.win_minute + 1) * 60000 - now) // 1000))
            return reply(429, err_body(-1003, "Too many requests; current limit of IP(%s) is %d requests per minute. Please use the websocket for live updates to avoid polling the API." % (ip, srv.weight_limit)),
                         {"Retry-After": str(retry)})

        if ep:
            limit = getattr(srv, ENDPOINT_LIMITS[ep][2])
            if ep_count > limit:
                if lim.win_429 >= srv.ban_after:
                    lim.banned_until = now + srv.ban_seconds * 1000
                    st.banned_418 += 1
                    return reply(418, err_body(-1003, "Way too many requests; IP(%s) banned until %d. Please use the websocket for live updates to avoid bans." % (ip, lim.banned_until)),
                                 {"Retry-After": str(max(1, srv.ban_seconds))})
                lim.win_429 += 1
                st.endpoint_limited_429[ep] += 1
                mk = err_body_data if ep == "oi" else err_body
                return reply(429, mk(-1003, "Too many requests; current limit of IP(%s) is %d requests per 5 minutes. Please use the websocket for live updates to avoid polling the API." % (ip, limit)),
                             {"Retry-After": str(max(1, -(-(ep_end - now) // 1000)))})

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
                return reply(500, err_body(-1000, "An unknown error occured while processing the request."))
            if variant == 1:
                srv.stats.status(502)
                return web.Response(status=502, body=GARBAGE[0], content_type="text/html", headers=headers(lim, None, wh))
            if variant == 2:
                return reply(503, err_body(-1001, "Internal error; unable to process your request. Please try again."))
            return reply(503, err_body(-1001, "Service Unavailable."))
        if "status_429" in faults:
            st.injected_429 += 1
            return reply(429, err_body(-1003, "Too many requests; current limit of IP(%s) is %d requests per minute. Please use the websocket for live updates to avoid polling the API." % (ip, srv.weight_limit)),
                         {"Retry-After": "1"})
        if "garbage" in faults:
            return reply(200, GARBAGE[srv.rng.randrange(len(GARBAGE))])

        status, body = route(path, q, now, lim)
        data = body.encode()
        if "mutate" in faults and status == 200:
            kind, data = mutate_body(srv.rng, data)
            st.mutations[kind] += 1
        if "truncate_json" in faults:
            return reply(status, data[:max(1, len(data) // 2)])
        if "truncate" in faults or "stall" in faults:
            st.status(status)
            resp = web.StreamResponse(status=status, headers=headers(lim, None, wh))
            resp.content_type = "application/json"
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
        return reply(status, data)

    def route(path, q, now, lim):
        if path == "/fapi/v1/time":
            return 200, '{"serverTime":%d}' % now
        if path == "/fapi/v1/ping":
            return 200, "{}"
        if path == "/fapi/v1/exchangeInfo":
            info = {
                "timezone": "UTC",
                "serverTime": now,
                "futuresType": "U_MARGINED",
                "rateLimits": [
                    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": srv.weight_limit},
                    {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
                    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300},
                ],
                "exchangeFilters": [],
                "assets": copy.deepcopy(ASSETS),
                "symbols": [s.exchange_info() for s in srv.symbols],
            }
            return 200, json.dumps(info, separators=(",", ":"))
        if path == "/fapi/v1/klines":
            err, p = parse_klines(srv, q)
            if err:
                return 400, err
            opens = select_opens(p["S"], p["iv"], p["start"], p["end"], p["limit"], now)
            srv.stats.klines_rows += len(opens)
            lim.served_klines(p["S"], len(opens))
            return 200, klines_body(p["S"], p["iv"], opens, now)
        if path == "/fapi/v1/ticker/24hr":
            err, S = parse_ticker(srv, q)
            if err:
                return 400, err
            if S is not None:
                srv.stats.ticker_rows += 1
                return 200, ticker_json(S, srv.board_epoch, srv.quote_volumes, now)
            syms = ticker_symbols(srv.symbols)
            srv.stats.ticker_rows += len(syms)
            return 200, "[" + ",".join(ticker_json(S, srv.board_epoch, srv.quote_volumes, now) for S in syms) + "]"
        if path == "/fapi/v1/fundingRate":
            err, p = parse_funding(srv, q)
            if err:
                return 400, err
            if p["S"] is not None:
                rows = [(p["S"], r) for r in select_funding(p["S"], p["start"], p["end"], p["limit"], now)]
            else:
                rows = select_funding_all(srv.symbols, p["start"], p["end"], p["limit"], now)
            srv.stats.funding_rows += len(rows)
            return 200, "[" + ",".join(funding_row_json(S, r) for S, r in rows) + "]"
        if path == "/futures/data/openInterestHist":
            err, p = parse_oi(srv, q, now)
            if err:
                return 400, err
            S = p["S"]
            ts = select_oi(S, p["p"], p["start"], p["end"], p["limit"], now)
            srv.stats.oi_rows += len(ts)
            return 200, "[" + ",".join(oi_row_json(S, T, bool(srv.oi_timestamp_as_string)) for T in ts) + "]"
        return 404, ""

    # ---- control endpoints -------------------------------------------------------------------
    async def control(request):
        path = request.path
        method = request.method

        def ok(obj, status=200):
            return web.Response(status=status, text=json.dumps(obj, separators=(",", ":")),
                                content_type="application/json")

        async def body_json():
            raw = await request.read()
            if not raw.strip():
                return {}
            return json.loads(raw)

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
                return ok(srv.config_json())
            if path == "/_fake/firehose" and method == "POST":
                cfg = await body_json()
                n = await firehose(int(cfg.get("frames", 1000)), cfg.get("stream"), cfg.get("start_ms"))
                return ok({"connections": n[0], "frames": n[1]})
            if path == "/_fake/archive":
                if method == "POST":
                    srv.set_archive_faults(await body_json())
                return ok({"faults": srv.archive_faults, "requests": srv.archive_requests,
                           "bytes": srv.archive_bytes, "not_found": srv.archive_404})
            if path == "/_fake/symbols":
                return ok([{"symbol": s.name, "onboardDate": s.onboard, "status": s.status,
                            "contractType": s.contract, "endMs": s.end_ms} for s in srv.symbols])
        except (ValueError, TypeError) as e:
            return ok({"error": str(e)}, status=400)
        return ok({"error": "unknown control endpoint"}, status=404)

    # ---- WebSocket ---------------------------------------------------------------------------
    class Conn:
        def __init__(self, ws, route_ok, combined, ip):
            self.ws = ws
            self.ip = ip  # peer address (GET /_fake/stats by_ip ws_streams)
            self.route_ok = route_ok  # /market route: klines delivered
            self.combined = combined
            self.subs = []
            self.state = {}  # stream -> last open time sent
            self.stalled_until = None
            self.msg_times = []
            self.last_pong = time.monotonic()
            self.opened = time.monotonic()
            self.closing = False
            self.last_burst = None  # monotonic time of the last live-close burst
            self.lock = asyncio.Lock()

    def parse_stream(name):
        """'btcusdt@kline_1m' -> (Symbol, '1m') or None (unknown/unsupported: accepted, silent)."""
        sym, sep, rest = name.partition("@")
        if not sep or not rest.startswith("kline_") or sym != sym.lower():
            return None
        S = srv.by_lower.get(sym)
        iv = rest[6:]
        if S is None or iv not in INTERVALS:
            return None
        return S, iv

    def note_subscribed(c, stream):
        """Remember the candle forming when a stream is subscribed: like
        Binance, the fake sends its closing event to whoever is subscribed at
        the close, even before the first push of the subscription."""
        p = parse_stream(stream)
        if p is None or stream in c.state:
            return
        S, iv = p
        o = floor_open(iv, srv.now())
        last = S.last_open(iv)
        if o >= S.first_open(iv) and (last is None or o <= last) and candle_exists(S, iv, o):
            c.state[stream] = o

    async def send(c, text, kline=False):
        if c.closing or c.ws.closed:
            return
        await c.ws.send_str(text)
        srv.stats.ws_frames_sent += 1
        if kline:
            srv.stats.ws_kline_frames_sent += 1

    def wrap(c, stream, payload):
        return '{"stream":"%s","data":%s}' % (stream, payload) if c.combined else payload

    async def drop(c):
        c.closing = True
        tr = c.ws._req.transport if c.ws._req is not None else None
        if tr is not None:
            tr.abort()

    async def push_loop(c):
        next_ping = time.monotonic() + srv.ws_ping_interval
        last_fault_check = time.monotonic()
        try:
            while not c.ws.closed and not c.closing:
                await asyncio.sleep(srv.ws_interval_ms / 1000.0)
                mono = time.monotonic()
                if mono - c.opened >= srv.ws_max_lifetime:
                    srv.stats.ws_lifetime_closes += 1
                    await c.ws.close()
                    return
                if mono - c.last_pong >= srv.ws_pong_timeout:
                    srv.stats.ws_pong_timeouts += 1
                    await c.ws.close()
                    return
                # WS faults: probabilities per second per connection
                dt = mono - last_fault_check
                if dt >= 1.0:
                    last_fault_check = mono
                    f = srv.faults
                    if f.get("ws_drop") and srv.ws_rng.random() < f["ws_drop"]:
                        srv.stats.faults["ws_drop"] += 1
                        await drop(c)
                        return
                    if f.get("ws_stall") and c.stalled_until is None and srv.ws_rng.random() < f["ws_stall"]:
                        srv.stats.faults["ws_stall"] += 1
                        ms = f.get("ws_stall_ms", 0)
                        c.stalled_until = mono + ms / 1000.0 if ms else float("inf")
                if c.stalled_until is not None:
                    if mono < c.stalled_until:
                        continue
                    c.stalled_until = None
                if mono >= next_ping:
                    next_ping = mono + srv.ws_ping_interval
                    await c.ws.ping(b"")
                if not c.route_ok or not c.subs:
                    continue
                now = srv.now()
                # live closes: a burst of closed candles, one a stream, with the current
                # event time (as at a candle boundary of the whole board)
                burst = srv.ws_close_every_ms > 0 and (
                    c.last_burst is None or (mono - c.last_burst) * 1000 >= srv.ws_close_every_ms)
                if burst:
                    c.last_burst = mono
                async with c.lock:
                    for stream in list(c.subs):
                        p = parse_stream(stream)
                        if p is None:
                            continue
                        S, iv = p
                        o = floor_open(iv, now)
                        last = S.last_open(iv)
                        frames = []
                        if srv.ws_forming and not (o < S.first_open(iv) or (last is not None and o > last)):
                            prev = c.state.get(stream)
                            if prev is not None and prev < o:
                                k = gen_candle(S, iv, prev)
                                frames.append(wrap(c, stream, ws_kline_payload(S, iv, k, True, now)))
                            if candle_exists(S, iv, o):
                                c.state[stream] = o
                                k, closed = candle_at(S, iv, o, now)
                                frames.append(wrap(c, stream, ws_kline_payload(S, iv, k, closed, now)))
                            else:  # maintenance: nothing forms, nothing closes at its end
                                c.state.pop(stream, None)
                        if burst:
                            # stamped as it is sent, not at the tick: a board's closes take
                            # the fake a while to send, which is not the client's latency
                            k = srv.live_close_candle(S, iv, stream, now)
                            if k is not None:
                                frames.append(wrap(c, stream, ws_kline_payload(S, iv, k, True, srv.now())))
                                srv.stats.ws_live_close_frames += 1
                        for fr in frames:
                            if srv.faults.get("ws_garbage") and srv.ws_rng.random() < srv.faults["ws_garbage"]:
                                srv.stats.faults["ws_garbage"] += 1
                                await send(c, '{"stream":"%s","data":{"e":"kline","E":' % stream)
                            await send(c, fr, True)
                            if srv.faults.get("ws_duplicate") and srv.ws_rng.random() < srv.faults["ws_duplicate"]:
                                srv.stats.faults["ws_duplicate"] += 1
                                await send(c, fr, True)
        except (ConnectionError, RuntimeError, asyncio.CancelledError):
            pass

    async def firehose(frames, stream_filter, start_ms):
        """Send `frames` closed-candle kline frames as fast as possible on every /market connection."""
        targets = [c for c in list(srv.conns) if c.route_ok and c.subs and not c.closing]
        total = 0
        cache = {}
        for c in targets:
            streams = [s for s in c.subs if parse_stream(s) and (stream_filter in (None, s))]
            if not streams:
                continue
            per = []
            for s in streams:
                key = (s, c.combined, frames, start_ms)
                if key not in cache:
                    S, iv = parse_stream(s)
                    now = srv.now()
                    o = floor_open(iv, now)
                    if start_ms is None:
                        for _ in range(frames):
                            o = skip_down(S, iv, prev_open(iv, o))
                        o = max(o, S.first_open(iv))
                    else:
                        o = max(ceil_open(iv, start_ms), S.first_open(iv))
                    lst = []
                    for _ in range(frames):
                        o = skip_up(S, iv, o)
                        k = gen_candle(S, iv, o)
                        lst.append(wrap(c, s, ws_kline_payload(S, iv, k, True, k[1] + 1)))
                        o = k[1] + 1
                    cache[key] = lst
                per.append(cache[key])
            async with c.lock:
                sent = 0
                for i in range(frames):
                    for lst in per:
                        if c.ws.closed:
                            break
                        await c.ws.send_str(lst[i])
                        sent += 1
                    if i % 256 == 255:
                        await asyncio.sleep(0)
                srv.stats.ws_frames_sent += sent
                srv.stats.ws_kline_frames_sent += sent
                srv.stats.ws_firehose_frames += sent
                total += sent
        return len(targets), total

    def ws_error(code, msg, rid=None):
        d = {"code": code, "msg": msg}
        if rid is not None:
            d["id"] = rid
        return json.dumps(d, separators=(",", ":"))

    async def handle_ws_text(c, text):
        try:
            m = json.loads(text)
        except ValueError:
            await send(c, ws_error(3, "Invalid JSON: expected value at line 1 column 1"))
            return
        if not isinstance(m, dict):
            await send(c, ws_error(3, "Invalid JSON: expected value at line 1 column 1"))
            return
        rid = m.get("id")
        if "method" not in m:
            await send(c, ws_error(2, "Invalid request: missing field `method` at line 1 column %d" % len(text)))
            return
        if not isinstance(rid, int) or isinstance(rid, bool) or rid < 0:
            await send(c, ws_error(2, "Invalid request: request ID must be an unsigned integer"))
            return
        method = m["method"]
        params = m.get("params", [])
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
                await send(c, ws_error(2, "Invalid request: invalid type: expected a sequence of strings"))
                return
            if method == "SUBSCRIBE" and srv.ws_subscribe_delay_ms > 0:
                # a SUBSCRIBE the exchange takes its time over (and the
                # connection's later messages with it)
                await asyncio.sleep(srv.ws_subscribe_delay_ms / 1000.0)
            async with c.lock:
                if method == "SUBSCRIBE":
                    new = [p for p in params if p not in c.subs]
                    if len(c.subs) + len(new) > srv.ws_max_streams:
                        await send(c, ws_error(-1, "Max streams per connection exceeded (%d)." % srv.ws_max_streams, rid))
                        await c.ws.close()
                        return
                    for p in new:
                        if p not in c.subs:
                            c.subs.append(p)
                            note_subscribed(c, p)
                else:
                    for p in params:
                        if p in c.subs:
                            c.subs.remove(p)
                            c.state.pop(p, None)
            await send(c, '{"result":null,"id":%d}' % rid)
        elif method == "LIST_SUBSCRIPTIONS":
            await send(c, json.dumps({"result": list(c.subs), "id": rid}, separators=(",", ":")))
        elif method == "SET_PROPERTY":
            if not isinstance(params, list) or len(params) != 2:
                await send(c, ws_error(2, "Invalid request: too many parameters"))
            elif not isinstance(params[0], str):
                await send(c, ws_error(2, "Invalid request: property name must be a string"))
            elif params[0] != "combined":
                await send(c, ws_error(0, "Unknown property", rid))
            elif not isinstance(params[1], bool):
                await send(c, ws_error(1, "Invalid value type: expected Boolean"))
            else:
                c.combined = params[1]
                await send(c, '{"result":null,"id":%d}' % rid)
        elif method == "GET_PROPERTY":
            if not isinstance(params, list) or len(params) != 1:
                await send(c, ws_error(2, "Invalid request: too many parameters"))
            elif not isinstance(params[0], str):
                await send(c, ws_error(2, "Invalid request: property name must be a string"))
            elif params[0] != "combined":
                await send(c, ws_error(0, "Unknown property", rid))
            else:
                await send(c, '{"result":%s,"id":%d}' % ("true" if c.combined else "false", rid))
        else:
            await send(c, ws_error(2, "Invalid request: unknown variant `%s`, expected one of `SUBSCRIBE`, `UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`, `SET_PROPERTY`, `GET_PROPERTY` at line 1 column 28" % method))

    def ws_route(path):
        """-> (route_ok, combined, initial streams) or None if not a WS path."""
        for prefix, ok in (("/market", True), ("/public", False), ("", False)):
            if prefix and not path.startswith(prefix + "/"):
                continue
            rest = path[len(prefix):]
            if rest == "/stream":
                return ok, True, None
            if rest == "/ws" or rest == "/ws/":
                return ok, False, []
            if rest.startswith("/ws/"):
                return ok, False, [s for s in rest[4:].split("/") if s]
        return None

    async def ws_handler(request, route_info):
        ok_route, combined, initial = route_info
        if initial is None:
            initial = [s for s in request.query.get("streams", "").split("/") if s]
        ws = web.WebSocketResponse(autoping=False, autoclose=True, compress=False, max_msg_size=1 << 20)
        if not ws.can_prepare(request).ok:
            return web.Response(status=400, text="websocket upgrade required")
        if len(initial) > srv.ws_max_streams:
            return web.Response(status=400, text="too many streams")
        await ws.prepare(request)
        c = Conn(ws, ok_route, combined, request.remote or "127.0.0.1")
        c.subs = list(dict.fromkeys(initial))
        for stream in c.subs:
            note_subscribed(c, stream)
        srv.conns.add(c)
        srv.stats.ws_connections_total += 1
        pusher = asyncio.ensure_future(push_loop(c))
        try:
            async for msg in ws:
                srv.stats.ws_messages_in += 1
                mono = time.monotonic()
                c.msg_times.append(mono)
                while c.msg_times and mono - c.msg_times[0] > 1.0:
                    c.msg_times.pop(0)
                if len(c.msg_times) > srv.ws_max_msg_rate:
                    srv.stats.ws_rate_drops += 1
                    await drop(c)
                    break
                if msg.type == WSMsgType.TEXT:
                    if c.stalled_until is None:
                        await handle_ws_text(c, msg.data)
                elif msg.type == WSMsgType.PING:
                    if c.stalled_until is None:
                        await ws.pong(msg.data)
                elif msg.type == WSMsgType.PONG:
                    c.last_pong = time.monotonic()
                elif msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                    break
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            c.closing = True
            pusher.cancel()
            srv.conns.discard(c)
        return ws

    archive_cache = {}

    async def archive(request):
        """A file of the bulk archives: no weight, no weight header (another host, in life).
        A file is a pure function of its path and the faults once published, so the last
        few built are kept: a client's second download costs the fake nothing."""
        path = request.path
        key = (path, json.dumps(srv.archive_faults, sort_keys=True))
        hit = archive_cache.get(key)
        if hit is not None and hit[0] == 200:
            status, body, ctype = hit
        else:
            status, body, ctype = archive_file(srv.symbols, path, srv.now(), srv.archive_faults)
            if status == 200:
                if len(archive_cache) >= 64:
                    archive_cache.pop(next(iter(archive_cache)))
                archive_cache[key] = (status, body, ctype)
        srv.archive_requests += 1
        if status == 404:
            srv.archive_404 += 1
            return web.Response(status=404, body=body, content_type=ctype)
        name = path.rsplit("/", 1)[1]
        if name in srv.archive_faults.get("truncate", ()) and ctype == "application/zip":
            # the whole length announced, half of it sent, then the connection dropped
            resp = web.StreamResponse(status=200, headers={"Content-Type": ctype})
            resp.content_length = len(body)
            await resp.prepare(request)
            await resp.write(body[:len(body) // 2])
            srv.archive_bytes += len(body) // 2
            rst(request)
            return resp
        srv.archive_bytes += len(body)
        return web.Response(status=200, body=body, content_type=ctype)

    async def dispatch(request):
        path = request.path
        if path.startswith("/_fake/"):
            return await control(request)
        if path.startswith(ARCHIVE_PREFIX):
            return await archive(request)
        if request.headers.get("Upgrade", "").lower() == "websocket":
            info = ws_route(path)
            if info is not None:
                return await ws_handler(request, info)
        return await rest(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", dispatch)
    app["srv"] = srv
    return app


async def serve_main(args):
    from aiohttp import web
    host = args.host
    if host not in ("127.0.0.1", "localhost", "::1"):
        print("refusing to bind non-loopback host %s" % host, file=sys.stderr)
        return 2
    srv = Server(args)
    app = make_app(srv)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, args.port, shutdown_timeout=1.0, reuse_address=True)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    if args.port_file:
        tmp = args.port_file + ".tmp.%d" % os.getpid()
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.replace(tmp, args.port_file)
    print("fake_binance listening on %s:%d" % (host, port), flush=True)
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


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------

def add_symbol_args(p):
    p.add_argument("--symbols", default=None, help="comma list replacing the TRADING perpetuals")
    p.add_argument("--synthetic", type=int, default=0, help="add N perpetuals S0000USDT, S0001USDT, ...")


def main(argv=None):
    ap = argparse.ArgumentParser(prog="fake_binance.py", description="Fake Binance USD-M futures exchange")
    sub = ap.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("serve", help="run the HTTP/WebSocket server")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=0)
    s.add_argument("--port-file", default=None)
    add_symbol_args(s)
    s.add_argument("--weight-limit", type=int, default=2400)
    s.add_argument("--ban-after", type=int, default=5)
    s.add_argument("--ban-seconds", type=int, default=120)
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--faults", default=None, help="JSON object, see PROTOCOL.md")
    s.add_argument("--ws-interval-ms", type=int, default=250)
    s.add_argument("--ws-max-streams", type=int, default=200)
    s.add_argument("--ws-max-lifetime", type=float, default=86400.0, help="seconds")
    s.add_argument("--ws-ping-interval", type=float, default=180.0, help="seconds")
    s.add_argument("--ws-pong-timeout", type=float, default=600.0, help="seconds")
    s.add_argument("--ws-max-msg-rate", type=int, default=10, help="incoming messages per second")
    s.add_argument("--board-epoch", type=int, default=0, help="reshuffles every ticker quoteVolume")
    s.add_argument("--funding-limit", type=int, default=500, help="fundingRate requests per 5 min")
    s.add_argument("--oi-limit", type=int, default=1000, help="openInterestHist requests per 5 min")

    t = sub.add_parser("truth", help="CSV of closed candles with open_time in [START_MS, END_MS)")
    t.add_argument("symbol")
    t.add_argument("interval")
    t.add_argument("start_ms", type=int)
    t.add_argument("end_ms", type=int)
    t.add_argument("--now", type=int, default=None, help="pretend the current time is MS")
    add_symbol_args(t)

    p = sub.add_parser("pages", help="klines REST bodies, one JSON array per line")
    p.add_argument("symbol")
    p.add_argument("interval")
    p.add_argument("start_ms", type=int)
    p.add_argument("count", type=int)
    p.add_argument("--limit", type=int, default=499)
    add_symbol_args(p)

    tk = sub.add_parser("ticker", help="CSV symbol,quoteVolume of GET /fapi/v1/ticker/24hr")
    add_symbol_args(tk)
    tk.add_argument("--board-epoch", type=int, default=0)

    f = sub.add_parser("funding", help="CSV of funding rows with START_MS <= fundingTime <= END_MS")
    f.add_argument("symbol")
    f.add_argument("start_ms", type=int)
    f.add_argument("end_ms", type=int)
    f.add_argument("--now", type=int, default=None, help="pretend the current time is MS")
    add_symbol_args(f)

    o = sub.add_parser("oi", help="CSV of open-interest rows with START_MS <= timestamp <= END_MS")
    o.add_argument("symbol")
    o.add_argument("period")
    o.add_argument("start_ms", type=int)
    o.add_argument("end_ms", type=int)
    o.add_argument("--now", type=int, default=None, help="pretend the current time is MS")
    o.add_argument("--archive", action="store_true",
                   help="every row the metrics archives hold (from the listing), not REST's window")
    add_symbol_args(o)

    args = ap.parse_args(argv)
    if args.cmd == "truth":
        return cmd_truth(args)
    if args.cmd == "pages":
        return cmd_pages(args)
    if args.cmd == "ticker":
        return cmd_ticker(args)
    if args.cmd == "funding":
        return cmd_funding(args)
    if args.cmd == "oi":
        return cmd_oi(args)
    # A SIGTERM/SIGINT that arrives before the event loop installs its own handlers still
    # exits cleanly with status 0.
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

"""Self-test of the fake CoinDCX exchange (REST on the public/api hosts, socket.io stream).

Run:  /usr/bin/python3 -m unittest discover -s test/fake_exchange -v
      (test/run-tests.sh runs every test_*.py of this directory)
"""

import asyncio
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import unittest
from collections import OrderedDict
from decimal import Decimal

HERE = os.path.dirname(os.path.abspath(__file__))
FAKE = os.path.join(HERE, "fake_coindcx.py")
PY = "/usr/bin/python3"
sys.path.insert(0, HERE)
import fake_coindcx as fc  # noqa: E402

MIN = 60_000
HOUR = 3_600_000
DAY = 86_400_000


def capture_dir():
    for d in (os.path.join(HERE, "..", "..", "..", "shared", "exchange-data", "coindcx"),
              os.environ.get("MDFEED_SHARED", "") + "/exchange-data/coindcx",
              "/work/shared/exchange-data/coindcx"):
        if os.path.isdir(d):
            return d
    return None


CAPTURES = capture_dir()


def capture(name):
    with open(os.path.join(CAPTURES, name)) as f:
        return f.read()


def okeys(text):
    """Key order of a JSON object text."""
    return list(json.loads(text, object_pairs_hook=OrderedDict).keys())


def raw_numbers(text):
    """JSON parsed with every number kept as its own text."""
    return json.loads(text, parse_float=lambda s: ("num", s), parse_int=lambda s: ("num", s))


def run_cli(*args):
    r = subprocess.run([PY, FAKE] + list(args), capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise AssertionError("cli %s failed: %s" % (args, r.stderr))
    return r.stdout


def truth(market, pair, iv, start, end, now=None):
    a = ["truth", market, pair, iv, str(start), str(end)]
    if now is not None:
        a += ["--now", str(now)]
    return [json.loads(line) for line in run_cli(*a).splitlines() if line]


def rest_rows_as_decimals(rows):
    """[{open,..,time}] with raw number texts -> comparable tuples of exact decimals."""
    out = []
    for r in rows:
        out.append((int(r["time"][1]),) + tuple(Decimal(r[k][1]) for k in ("open", "high", "low", "close", "volume")))
    return out


def truth_as_decimals(rows):
    return [(r["open_time"],) + tuple(Decimal(r[k]) for k in ("open", "high", "low", "close", "volume"))
            for r in rows]


class SIO:
    """A minimal raw socket.io client over aiohttp's WebSocket."""

    def __init__(self, ws, eio):
        self.ws = ws
        self.eio = eio
        self.open = None
        self.closed = False

    @classmethod
    async def connect(cls, session, base, eio=4, do_connect=True, query=""):
        ws = await session.ws_connect("%s/socket.io/?EIO=%d&transport=websocket%s" % (base, eio, query),
                                      autoclose=False, autoping=True)
        c = cls(ws, eio)
        c.open = await c.recv(5)
        if eio == 3:
            c.connect_packet = await c.recv(5)
        elif do_connect:
            await c.send("40")
            c.connect_packet = await c.recv(5)
        return c

    async def send(self, text):
        await self.ws.send_str(text)

    async def recv(self, timeout=5.0):
        import aiohttp
        try:
            m = await self.ws.receive(timeout=timeout)
        except asyncio.TimeoutError:
            return ""
        if m.type == aiohttp.WSMsgType.TEXT:
            return m.data
        self.closed = True
        return None

    async def collect(self, secs, pong=True, ping_every=None):
        """Frames received for secs seconds: [(local time, text)]; answers EIO4 pings unless told
        not to; sends EIO3 pings every ping_every seconds.  Stops at a close."""
        out = []
        end = time.time() + secs
        next_ping = time.time() + ping_every if ping_every else None
        while time.time() < end:
            wait = end - time.time()
            if next_ping is not None:
                wait = min(wait, max(0.0, next_ping - time.time()))
            m = await self.recv(max(0.01, wait))
            if m is None:
                break
            if m:
                out.append((time.time(), m))
                if m == "2" and self.eio == 4 and pong:
                    await self.send("3")
            if next_ping is not None and time.time() >= next_ping:
                await self.send("2")
                next_ping = time.time() + ping_every
        return out

    async def join(self, channel):
        await self.send('42["join",{"channelName":"%s"}]' % channel)

    async def leave(self, channel):
        await self.send('42["leave",{"channelName":"%s"}]' % channel)

    async def close(self):
        await self.ws.close()


def events(frames, name="candlestick"):
    """Decoded candlestick payloads (data parsed a second time) from collected frames."""
    out = []
    for t, f in frames:
        if not f.startswith("42["):
            continue
        try:
            ev = json.loads(f[2:])
        except ValueError:
            continue
        if ev[0] != name:
            continue
        env = ev[1]
        if not isinstance(env, dict) or not isinstance(env.get("data"), str):
            continue
        try:
            out.append((t, env, json.loads(env["data"])))
        except ValueError:
            continue
    return out


class FakeCoinDCXTest(unittest.TestCase):
    proc = None
    port = None

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        pf = os.path.join(cls.tmp.name, "port")
        cls.errlog = open(os.path.join(cls.tmp.name, "stderr"), "w+")
        cls.proc = subprocess.Popen([PY, FAKE, "serve", "--port", "0", "--port-file", pf, "--seed", "3"],
                                    stdout=subprocess.PIPE, stderr=cls.errlog, text=True)
        deadline = time.time() + 10
        while not os.path.exists(pf):
            if time.time() > deadline or cls.proc.poll() is not None:
                cls.errlog.seek(0)
                raise RuntimeError("server did not start: %s" % cls.errlog.read())
            time.sleep(0.02)
        with open(pf) as f:
            cls.port = int(f.read())
        line = cls.proc.stdout.readline()
        assert line.strip() == "fake_coindcx listening on 127.0.0.1:%d" % cls.port, line
        cls.base = "http://127.0.0.1:%d" % cls.port

    @classmethod
    def tearDownClass(cls):
        cls.proc.terminate()
        rc = cls.proc.wait(timeout=10)
        cls.proc.stdout.close()
        cls.errlog.seek(0)
        err = cls.errlog.read()
        cls.errlog.close()
        cls.tmp.cleanup()
        assert rc == 0, "serve exited with %r on SIGTERM" % rc
        assert "Traceback" not in err, "server logged errors:\n" + err

    # ---- helpers ---------------------------------------------------------------------------
    def req(self, path, method="GET", body=None, timeout=15, source=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout,
                                       source_address=(source, 0) if source else None)
        try:
            c.request(method, path, body=json.dumps(body) if body is not None else None)
            r = c.getresponse()
            data = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data
        finally:
            c.close()

    def control(self, path, body=None):
        st, _, data = self.req(path, "POST" if body is not None else "GET", body)
        self.assertEqual(st, 200, data)
        return json.loads(data)

    def config(self, **kw):
        return self.control("/_fake/config", kw)

    def stats(self):
        return self.control("/_fake/stats")

    def setUp(self):
        self.control("/_fake/faults", {})
        self.control("/_fake/config", dict(fc.DEFAULT_CONFIG, rate_limit=100000))
        self.control("/_fake/reset", {})

    def server_now(self):
        return int(time.time() * 1000) + self.control("/_fake/config")["clock_offset_ms"]

    def candlesticks(self, pair, res, fr, to, pcode="f", expect=200):
        st, h, body = self.req("/market_data/candlesticks?pair=%s&from=%s&to=%s&resolution=%s&pcode=%s"
                               % (pair, fr, to, res, pcode))
        self.assertEqual(st, expect, body)
        return body, h

    def spot(self, query, expect=200):
        st, h, body = self.req("/market_data/candles?" + query)
        self.assertEqual(st, expect, body)
        return body, h

    def set_clock_before_boundary(self, iv_ms, before_ms):
        """Server clock -> a boundary B of iv_ms minus before_ms; returns B (server ms)."""
        real = int(time.time() * 1000)
        b = (real // iv_ms + 2) * iv_ms
        self.config(clock_offset_ms=b - before_ms - real)
        return b

    def ws(self, coro_fn):
        import aiohttp

        async def main():
            async with aiohttp.ClientSession() as s:
                return await coro_fn(s, self.base)
        return asyncio.run(main())

    # ---- REST: paths, envelopes -------------------------------------------------------------
    def test_unknown_path_and_wrong_method(self):
        for path, method in (("/nope", "GET"), ("/fapi/v1/klines", "GET"), ("/market_data/candles", "POST"),
                             ("/exchange/v1/markets_details", "POST"), ("/socket.io", "GET")):
            st, h, body = self.req(path, method)
            self.assertEqual(st, 404, path)
            self.assertEqual(body, b'{"status":"error","message":"not_found","code":404}')
        if CAPTURES:
            self.assertIn('{"status":"error","message":"not_found","code":404}', capture("rest-error-bodies.jsonl"))

    def test_candlesticks_shape_units_order(self):
        now = self.server_now()
        to = now // 1000
        body, h = self.candlesticks("B-BTC_USDT", "1", to - 600, to)
        body = body.decode()
        self.assertEqual(h["content-type"], "application/json; charset=utf-8")
        self.assertEqual(okeys(body), ["s", "data"])
        d = json.loads(body)
        self.assertEqual(d["s"], "ok")
        rows = d["data"]
        self.assertIn(len(rows), (10, 11))
        times = [r["time"] for r in rows]
        self.assertEqual(times, sorted(times))  # oldest first
        self.assertTrue(all(t % MIN == 0 and len(str(t)) == 13 for t in times))  # ms
        self.assertEqual(times[-1], now - now % MIN)  # the forming bar is included
        first = body[body.index('{"open"'):]
        self.assertEqual(okeys(first[:first.index("}") + 1]), ["open", "high", "low", "volume", "close", "time"])
        raw = raw_numbers(body)["data"]
        for r in raw:
            for k in ("open", "high", "low", "volume", "close"):
                self.assertEqual(r[k][0], "num", "OHLCV are JSON numbers")
            self.assertLessEqual(Decimal(r["low"][1]), min(Decimal(r["open"][1]), Decimal(r["close"][1])))
            self.assertGreaterEqual(Decimal(r["high"][1]), max(Decimal(r["open"][1]), Decimal(r["close"][1])))
        if CAPTURES:
            cap = capture("rest-futures-candlesticks.tradex-fixture.json")
            self.assertEqual(okeys(cap), ["s", "data"])
            row = cap[cap.index('{"open"'):]
            self.assertEqual(okeys(row[:row.index("}") + 1]), ["open", "high", "low", "volume", "close", "time"])
            ctimes = [r["time"] for r in json.loads(cap)["data"]]
            self.assertEqual(ctimes, sorted(ctimes))

    def test_candlesticks_window_semantics(self):
        t0 = fc.days_from_civil(2025, 3, 10) * DAY // 1000  # seconds
        rows = json.loads(self.candlesticks("B-ETH_USDT", "1", t0, t0 + 300)[0])["data"]
        self.assertEqual([r["time"] for r in rows], [(t0 + 60 * i) * 1000 for i in range(6)])  # both ends inclusive
        rows = json.loads(self.candlesticks("B-ETH_USDT", "1", t0 + 1, t0 + 299)[0])["data"]
        self.assertEqual([r["time"] for r in rows], [(t0 + 60 * i) * 1000 for i in range(1, 5)])
        rows = json.loads(self.candlesticks("B-ETH_USDT", "60", t0, t0 + 5 * 3600 + 1)[0])["data"]
        self.assertEqual([r["time"] for r in rows], [(t0 + 3600 * i) * 1000 for i in range(6)])
        # from > to, unknown pair: an empty ok answer
        self.assertEqual(self.candlesticks("B-ETH_USDT", "1", t0 + 60, t0)[0], b'{"s":"ok","data":[]}')
        self.assertEqual(self.candlesticks("B-NOPE_USDT", "1", t0, t0 + 60)[0], b'{"s":"ok","data":[]}')
        # before listing: starts at the listing bar
        pepe = fc.find_pair("futures", "B-PEPE_USDT")
        rows = json.loads(self.candlesticks("B-PEPE_USDT", "1D", pepe.onboard // 1000 - 10 * 86400,
                                            pepe.onboard // 1000 + 2 * 86400)[0])["data"]
        self.assertEqual([r["time"] for r in rows], [pepe.onboard + i * DAY for i in range(3)])
        # delisted: nothing at or after the end
        old = fc.find_pair("futures", "B-OLD_USDT")
        rows = json.loads(self.candlesticks("B-OLD_USDT", "60", old.end_ms // 1000 - 3 * 3600,
                                            old.end_ms // 1000 + 3 * 3600)[0])["data"]
        self.assertEqual([r["time"] for r in rows], [old.end_ms - 3 * HOUR + i * HOUR for i in range(3)])
        # a window in the future: up to the forming bar
        now = self.server_now()
        rows = json.loads(self.candlesticks("B-BTC_USDT", "5", now // 1000 - 900, now // 1000 + 86400)[0])["data"]
        self.assertEqual(rows[-1]["time"], now - now % (5 * MIN))

    def test_candlesticks_errors(self):
        bad = b'{"code":400,"message":"Invalid Request."}'
        if CAPTURES:
            self.assertIn(bad.decode(), capture("rest-error-bodies.jsonl"))
        t = 1735689600
        for q in ("pair=B-BTC_USDT&to=%d&resolution=1&pcode=f" % t,
                  "pair=B-BTC_USDT&from=%d&resolution=1&pcode=f" % t,
                  "pair=B-BTC_USDT&from=%d&to=%d&pcode=f" % (t, t),
                  "from=%d&to=%d&resolution=1&pcode=f" % (t, t),
                  "pair=B-BTC_USDT&from=abc&to=%d&resolution=1" % t,
                  "pair=B-BTC_USDT&from=1.5&to=%d&resolution=1" % t,
                  "pair=B-BTC_USDT&from=-1&to=%d&resolution=1" % t):
            st, h, body = self.req("/market_data/candlesticks?" + q)
            self.assertEqual((st, body), (400, bad), q)
        for res in ("3", "7", "120", "720", "1W", "W", "1440", "1m", "1h", "2", ""):
            st, _, body = self.req("/market_data/candlesticks?pair=B-BTC_USDT&from=%d&to=%d&resolution=%s&pcode=f"
                                   % (t, t + 86400 * 40, res))
            self.assertEqual((st, body), (400, bad), res)
        want = {"1": MIN, "5": 5 * MIN, "15": 15 * MIN, "30": 30 * MIN, "60": HOUR, "240": 4 * HOUR,
                "480": 8 * HOUR, "1D": DAY, "D": DAY}
        for res, step in want.items():
            rows = json.loads(self.candlesticks("B-BTC_USDT", res, t, t + 40 * step // 1000)[0])["data"]
            self.assertEqual(len(rows), 41, res)
            self.assertTrue(all(b["time"] - a["time"] == step for a, b in zip(rows, rows[1:])), res)
        rows = json.loads(self.candlesticks("B-BTC_USDT", "1M", t, t + 86400 * 100)[0])["data"]
        self.assertEqual([r["time"] for r in rows], [1735689600000, 1738368000000, 1740787200000, 1743465600000])

    def test_candlesticks_exponent_numbers(self):
        t0 = fc.days_from_civil(2025, 2, 1) * DAY
        body = self.candlesticks("B-PEPE_USDT", "1", t0 // 1000, t0 // 1000 + 3600)[0].decode()
        self.assertRegex(body, r'"open":[1-9](\.\d+)?e-7,')
        self.assertNotIn("e-07", body)   # JavaScript's text, not Python's
        self.assertNotIn("E", body)
        rows = rest_rows_as_decimals(raw_numbers(body)["data"])
        tr = truth_as_decimals(truth("futures", "B-PEPE_USDT", "1m", t0, t0 + HOUR + 1))
        self.assertEqual(rows, tr)
        # the truth's strings are the exact decimals: 4.1e-7 -> "0.00000041"
        for r in truth("futures", "B-PEPE_USDT", "1m", t0, t0 + 5 * MIN):
            self.assertRegex(r["open"], r"^0\.000000\d+$")
        spot_body = self.spot("pair=B-BTTC_USDT&interval=1m&startTime=%d&endTime=%d&limit=10" % (t0, t0 + 9 * MIN))[0]
        self.assertRegex(spot_body.decode(), r'"close":[1-9](\.\d+)?e-7,')
        tr = truth("spot", "B-BTTC_USDT", "1m", t0, t0 + 10 * MIN)
        self.assertEqual(rest_rows_as_decimals(raw_numbers(spot_body))[::-1], truth_as_decimals(tr))
        self.assertTrue(all(r["open"].startswith("0.000000") and len(r["open"]) == 10 for r in tr))

    def test_js_number_text(self):
        cases = [((31, 8), "3.1e-7"), ((4123, 10), "4.123e-7"), ((1, 8), "1e-8"), ((31, 7), "0.0000031"),
                 ((1, 6), "0.000001"), ((797022, 1), "79702.2"), ((19610, 1), "1961"), ((100, 3), "0.1"),
                 ((0, 5), "0"), ((5, 0), "5"), ((120269, 3), "120.269"), ((10 ** 21, 0), "1e+21"),
                 ((123 * 10 ** 19, 0), "1.23e+21"),
                 ((10 ** 20, 0), "100000000000000000000"), ((-31, 8), "-3.1e-7")]
        for (v, d), want in cases:
            self.assertEqual(fc.js_num(v, d), want, (v, d))
            self.assertEqual(Decimal(fc.js_num(v, d)), Decimal(v).scaleb(-d))
        self.assertEqual(fc.dec_text(31, 8), "0.00000031")
        self.assertEqual(fc.dec_text(19610, 1), "1961")
        self.assertEqual(fc.ruby_float(1e-10), "1.0e-10")
        self.assertEqual(fc.ruby_float(10), "10.0")
        self.assertEqual(fc.ruby_float(0.025), "0.025")

    def test_candlesticks_no_cap_and_cap_switch(self):
        t0 = fc.days_from_civil(2025, 5, 5) * DAY // 1000
        body = self.candlesticks("B-BTC_USDT", "1", t0, t0 + 7 * 86400 - 60)[0]
        rows = json.loads(body)["data"]
        self.assertEqual(len(rows), 10080)
        self.assertEqual(self.stats()["rows"]["candlesticks"], 10080)
        self.config(candlesticks_max_bars=100)
        rows2 = json.loads(self.candlesticks("B-BTC_USDT", "1", t0, t0 + 7 * 86400 - 60)[0])["data"]
        self.assertEqual(rows2, rows[:100])

    def test_candlesticks_serves_spot_pairs_pcode_ignored(self):
        t0 = fc.days_from_civil(2025, 1, 1) * DAY
        a = self.candlesticks("I-BTC_INR", "60", t0 // 1000, t0 // 1000 + 23 * 3600, pcode="f")[0]
        b = self.candlesticks("I-BTC_INR", "60", t0 // 1000, t0 // 1000 + 23 * 3600, pcode="s")[0]
        c = self.req("/market_data/candlesticks?pair=I-BTC_INR&from=%d&to=%d&resolution=60"
                     % (t0 // 1000, t0 // 1000 + 23 * 3600))[2]
        self.assertEqual(a, b)
        self.assertEqual(a, c)
        self.assertEqual(rest_rows_as_decimals(raw_numbers(a)["data"]),
                         truth_as_decimals(truth("spot", "I-BTC_INR", "1h", t0, t0 + DAY)))
        f = self.candlesticks("B-BTC_USDT", "60", t0 // 1000, t0 // 1000 + 23 * 3600)[0]
        self.assertEqual(rest_rows_as_decimals(raw_numbers(f)["data"]),
                         truth_as_decimals(truth("futures", "B-BTC_USDT", "1h", t0, t0 + DAY)))
        self.assertNotEqual(truth_as_decimals(truth("futures", "B-BTC_USDT", "1h", t0, t0 + DAY)),
                            truth_as_decimals(truth("spot", "B-BTC_USDT", "1h", t0, t0 + DAY)))

    # ---- spot REST ----------------------------------------------------------------------------
    def test_spot_candles_shape_order_limit(self):
        now = self.server_now()
        body, h = self.spot("pair=B-BTC_USDT&interval=1m")
        body = body.decode()
        self.assertEqual(h["content-type"], "application/json; charset=utf-8")
        rows = json.loads(body)
        self.assertIsInstance(rows, list)
        self.assertEqual(len(rows), 500)  # default limit
        times = [r["time"] for r in rows]
        self.assertEqual(times, sorted(times, reverse=True))  # newest first
        self.assertIn(times[0], (now - now % MIN, now - now % MIN + MIN))  # the forming bar
        self.assertEqual(okeys(body[1:body.index("}") + 1]), ["open", "high", "low", "volume", "close", "time"])
        for r in raw_numbers(body):
            self.assertTrue(all(r[k][0] == "num" for k in ("open", "high", "low", "volume", "close")))
        self.assertEqual(len(json.loads(self.spot("pair=B-BTC_USDT&interval=1h&limit=1000")[0])), 1000)
        self.assertEqual(len(json.loads(self.spot("pair=B-BTC_USDT&interval=1d&limit=5000")[0])), 1000)
        self.assertEqual(len(json.loads(self.spot("pair=B-BTC_USDT&interval=15m&limit=7")[0])), 7)
        if CAPTURES:
            cap = capture("rest-spot-candles.ccxt-comment.json")
            self.assertEqual(okeys(cap.strip()[1:-1]), ["open", "high", "low", "volume", "close", "time"])

    def test_spot_candles_window(self):
        t0 = fc.days_from_civil(2025, 6, 1) * DAY
        rows = json.loads(self.spot("pair=I-BTC_INR&interval=1m&startTime=%d&endTime=%d&limit=5" % (t0, t0 + 9 * MIN))[0])
        self.assertEqual([r["time"] for r in rows], [t0 + i * MIN for i in range(4, -1, -1)])
        rows = json.loads(self.spot("pair=I-BTC_INR&interval=1m&startTime=%d&endTime=%d" % (t0 + 1, t0 + 3 * MIN + 5))[0])
        self.assertEqual([r["time"] for r in rows], [t0 + 3 * MIN, t0 + 2 * MIN, t0 + MIN])
        rows = json.loads(self.spot("pair=I-BTC_INR&interval=1d&startTime=%d&limit=3" % t0)[0])
        self.assertEqual([r["time"] for r in rows], [t0 + 2 * DAY, t0 + DAY, t0])
        # endTime alone is ignored: the newest bars
        a = json.loads(self.spot("pair=I-BTC_INR&interval=1h&endTime=%d&limit=3" % t0)[0])
        self.assertGreater(a[-1]["time"], t0 + 30 * DAY)
        tr = truth("spot", "I-BTC_INR", "1m", t0, t0 + 10 * MIN)
        body = self.spot("pair=I-BTC_INR&interval=1m&startTime=%d&endTime=%d&limit=10" % (t0, t0 + 9 * MIN))[0]
        self.assertEqual(rest_rows_as_decimals(raw_numbers(body))[::-1], truth_as_decimals(tr))

    def test_spot_candles_errors(self):
        iv_err = b'{"code":422,"errorCode":"BFF-SO-004","message":"interval must be one of [1m, 15m, 1h, 1d]","status":"error"}'
        if CAPTURES:
            lines = capture("rest-error-bodies.jsonl").splitlines()
            self.assertEqual(lines[0].encode(), iv_err)
            self.assertEqual(lines[1], '{"code":422,"errorCode":"BFF-SO-004","message":"Invalid pair NOPE","status":"error"}')
        for iv in ("5m", "30m", "4h", "8h", "1w", "1M", "3m", "", "1"):
            body, _ = self.spot("pair=B-BTC_USDT&interval=%s" % iv, expect=422)
            self.assertEqual(body, iv_err, iv)
        body, _ = self.spot("pair=NOPE&interval=1m", expect=422)
        self.assertEqual(body, b'{"code":422,"errorCode":"BFF-SO-004","message":"Invalid pair NOPE","status":"error"}')
        body, _ = self.spot("interval=1m", expect=422)
        self.assertEqual(json.loads(body)["message"], "Invalid pair ")
        body, _ = self.spot("pair=B-PEPE_USDT&interval=1m", expect=422)  # futures only

    # ---- instruments and markets --------------------------------------------------------------
    def test_active_instruments_and_instrument(self):
        p = "/exchange/v1/derivatives/futures/data/active_instruments"
        st, h, body = self.req(p + "?margin_currency_short_name[]=USDT")
        self.assertEqual(st, 200)
        usdt = json.loads(body)
        self.assertEqual(usdt, ["B-BTC_USDT", "B-ETH_USDT", "B-PEPE_USDT", "B-ID_USDT", "B-NEW_USDT"])
        self.assertEqual(json.loads(self.req(p + "?margin_currency_short_name[]=INR")[2]), ["B-BTC_USDT", "B-ETH_USDT"])
        self.assertEqual(json.loads(self.req(p)[2]), usdt)
        self.assertEqual(json.loads(self.req(p + "?margin_currency_short_name=USDT")[2]), usdt)
        self.assertEqual(json.loads(self.req(p + "?margin_currency_short_name[]=INR&margin_currency_short_name[]=USDT")[2]), usdt)
        self.assertEqual(json.loads(self.req(p + "?margin_currency_short_name[]=BTC")[2]), [])
        if CAPTURES:
            doc = capture("DOC-EXAMPLE.active-instruments.txt")
            self.assertTrue(all(re.match(r"^B-[A-Z0-9]+_USDT$", x) for x in re.findall(r'"([^"]+)"', doc)))
        ip = "/exchange/v1/derivatives/futures/data/instrument"
        st, _, body = self.req(ip + "?pair=B-BTC_USDT&margin_currency_short_name=USDT")
        self.assertEqual(st, 200)
        inst = json.loads(body)["instrument"]
        self.assertEqual(list(json.loads(body)), ["instrument"])
        for k in ("pair", "status", "kind", "price_increment", "quantity_increment", "min_notional",
                  "funding_frequency", "settlement", "margin_currency_short_name",
                  "dynamic_position_leverage_details", "dynamic_safety_margin_details", "exit_only"):
            self.assertIn(k, inst)
        self.assertEqual((inst["pair"], inst["status"], inst["kind"], inst["settlement"], inst["funding_frequency"]),
                         ("B-BTC_USDT", "active", "perpetual", "never", 8))
        self.assertEqual(Decimal(str(inst["price_increment"])), Decimal("0.1"))
        self.assertIn('"max_leverage_long":20.0', body.decode())
        inr = json.loads(self.req(ip + "?pair=B-ETH_USDT&margin_currency_short_name=INR")[2])["instrument"]
        self.assertEqual(inr["margin_currency_short_name"], "INR")
        pepe = self.req(ip + "?pair=B-PEPE_USDT&margin_currency_short_name=USDT")[2].decode()
        self.assertIn('"price_increment":1.0e-10', pepe)
        old = json.loads(self.req(ip + "?pair=B-OLD_USDT&margin_currency_short_name=USDT")[2])["instrument"]
        self.assertEqual(old["status"], "inactive")
        for q in ("?pair=B-NOPE_USDT&margin_currency_short_name=USDT", "?pair=B-PEPE_USDT&margin_currency_short_name=INR",
                  "?margin_currency_short_name=USDT"):
            st, _, body = self.req(ip + q)
            self.assertEqual((st, body), (422, b'{"code":422,"message":"Instrument not found","status":"error"}'), q)

    def test_markets_details(self):
        st, h, body = self.req("/exchange/v1/markets_details")
        self.assertEqual(st, 200)
        mk = json.loads(body)
        by = {m["pair"]: m for m in mk}
        self.assertEqual(set(by), {P.name for P in fc.build_pairs()[1]})
        keyorder = {}
        if CAPTURES:
            for m in json.loads(capture("rest-markets-details.EXCERPT.tradex-verify.json"), object_pairs_hook=OrderedDict):
                keyorder[m["ecode"]] = list(m)
        for P in fc.build_pairs()[1]:
            m = by[P.name]
            self.assertEqual(m["pair"], "%s-%s_%s" % (m["ecode"], m["target_currency_short_name"], m["base_currency_short_name"]))
            self.assertEqual(m["coindcx_name"], m["target_currency_short_name"] + m["base_currency_short_name"])
            self.assertEqual((m["base_currency_precision"], m["target_currency_precision"]), (P.pp, P.qp))
            self.assertEqual(m["status"], "active")
        if keyorder:
            for m in json.loads(body, object_pairs_hook=OrderedDict):
                want = keyorder.get(m["ecode"])
                if want:
                    self.assertEqual(list(m), want, m["pair"])
        self.assertEqual((by["KC-LYX_USDT"]["symbol"], by["G-MLK_USDT"]["symbol"], by["I-BTC_INR"]["symbol"]),
                         ("LYX-USDT", "MLK_USDT", "BTCINR"))
        self.assertIn('"min_price":1e-8', body.decode())  # BTTC: JavaScript number text
        names = json.loads(self.req("/exchange/v1/markets")[2])
        self.assertIn("BTCINR", names)

    # ---- rate limit ---------------------------------------------------------------------------
    def test_rate_limit(self):
        self.config(rate_limit=5, rate_window_s=60)
        self.control("/_fake/reset", {})
        path = "/market_data/candles?pair=B-BTC_USDT&interval=1m&limit=1"
        for i in range(5):
            st, h, _ = self.req(path)
            self.assertEqual(st, 200)
            self.assertEqual(h["ratelimit-policy"], "5;w=60")
            m = re.match(r"^limit=5, remaining=(\d+), reset=(\d+)$", h["ratelimit"])
            self.assertTrue(m, h["ratelimit"])
            self.assertEqual(int(m.group(1)), 4 - i)
            self.assertTrue(0 < int(m.group(2)) <= 60)
        st, h, body = self.req(path)
        self.assertEqual(st, 429)
        self.assertEqual(body, b"Too many requests, please try again later.")
        self.assertTrue(h["content-type"].startswith("text/html"))
        self.assertTrue(h["ratelimit"].startswith("limit=5, remaining=0, reset="))
        self.assertTrue(1 <= int(h["retry-after"]) <= 60)
        # another host family, another client IP: their own budgets
        self.assertEqual(self.req("/exchange/v1/markets")[0], 200)
        self.assertEqual(self.req(path, source="127.0.0.2")[0], 200)
        self.assertEqual(self.stats()["rate_limited_429"], 1)
        # the window restarts
        self.config(rate_window_s=1)
        self.control("/_fake/reset", {})
        for _ in range(5):
            self.req(path)
        self.assertEqual(self.req(path)[0], 429)
        time.sleep(1.1)
        self.assertEqual(self.req(path)[0], 200)

    # ---- REST faults --------------------------------------------------------------------------
    def test_rest_faults(self):
        path = "/market_data/candles?pair=B-BTC_USDT&interval=1m&limit=5"
        self.control("/_fake/faults", {"status_5xx": 1, "seed": 5})
        seen = set()
        for _ in range(30):
            st, h, body = self.req(path)
            seen.add(st)
            self.assertIn("ratelimit", h)
            if st in (500, 503):
                self.assertEqual(json.loads(body)["code"], st)
            else:
                self.assertTrue(body.startswith(b"<html>"))
        self.assertEqual(seen, {500, 502, 503, 504})
        self.control("/_fake/faults", {"status_429": 1})
        st, h, body = self.req(path)
        self.assertEqual((st, body), (429, b"Too many requests, please try again later."))
        self.assertEqual(self.stats()["injected_429"], 1)
        self.control("/_fake/faults", {"garbage": 1})
        for _ in range(4):
            st, _, body = self.req(path)
            self.assertEqual(st, 200)
            with self.assertRaises(ValueError):
                json.loads(body)
        self.control("/_fake/faults", {"truncate_json": 1})
        st, h, body = self.req(path)
        self.assertEqual(int(h["content-length"]), len(body))
        with self.assertRaises(ValueError):
            json.loads(body)
        self.control("/_fake/faults", {"truncate": 1})
        with self.assertRaises((http.client.IncompleteRead, ConnectionError)):
            self.req(path)
        self.control("/_fake/faults", {"reset": 1})
        with self.assertRaises((ConnectionError, http.client.RemoteDisconnected, OSError)):
            self.req(path)
        self.control("/_fake/faults", {"slow": 1, "slow_ms": 400})
        t = time.time()
        self.assertEqual(self.req(path)[0], 200)
        self.assertGreaterEqual(time.time() - t, 0.38)
        self.control("/_fake/faults", {"stall": 1, "stall_ms": 400})
        t = time.time()
        st, _, body = self.req(path)
        self.assertEqual(st, 200)
        json.loads(body)
        self.assertGreaterEqual(time.time() - t, 0.38)
        self.control("/_fake/faults", {"mutate": 1, "seed": 2})
        for _ in range(6):
            st, _, body = self.req(path)
            self.assertEqual(st, 200)
        self.assertEqual(sum(self.stats()["mutations"].values()), 6)
        # script and paths
        self.control("/_fake/faults", {"script": ["status_5xx", "garbage"], "paths": ["/market_data/candles"]})
        self.assertEqual(self.req("/exchange/v1/markets")[0], 200)  # other path: no fault, script kept
        self.assertIn(self.req(path)[0], (500, 502, 503, 504))
        st, _, body = self.req(path)
        with self.assertRaises(ValueError):
            json.loads(body)
        self.assertEqual(self.req(path)[0], 200)
        # seeded: the same sequence twice
        seqs = []
        for _ in range(2):
            self.control("/_fake/faults", {"status_5xx": 0.5, "seed": 11})
            seqs.append([self.req(path)[0] for _ in range(12)])
        self.assertEqual(seqs[0], seqs[1])
        self.assertIn(200, seqs[0])
        st, _, body = self.req("/_fake/faults", "POST", {"nope": 1})
        self.assertEqual(st, 400)
        st, _, body = self.req("/_fake/faults", "POST", {"status_5xx": 2})
        self.assertEqual(st, 400)
        # faults do not touch control endpoints
        self.control("/_fake/faults", {"status_5xx": 1})
        self.stats()

    # ---- truth ----------------------------------------------------------------------------------
    def test_truth_cli(self):
        t0 = fc.days_from_civil(2025, 4, 2) * DAY
        rows = truth("futures", "B-BTC_USDT", "1h", t0, t0 + DAY)
        self.assertEqual(len(rows), 24)
        self.assertEqual(list(rows[0]), ["market", "pair", "interval", "open_time", "close_time", "open", "high",
                                         "low", "close", "volume", "quote_volume", "ws_quote_volume"])
        self.assertEqual(rows[0]["close_time"], t0 + HOUR - 1)
        self.assertIsNone(rows[0]["quote_volume"])
        for r in rows:
            for k in ("open", "high", "low", "close", "volume"):
                self.assertRegex(r[k], r"^\d+(\.\d*[1-9])?$")  # exact decimal, no exponent, no trailing zeros
            self.assertRegex(r["ws_quote_volume"], r"^\d+\.\d{5}$")
        body = self.candlesticks("B-BTC_USDT", "60", t0 // 1000, (t0 + DAY) // 1000 - 1)[0]
        self.assertEqual(rest_rows_as_decimals(raw_numbers(body)["data"]), truth_as_decimals(rows))
        # closed bars only; now decides
        now = self.server_now()
        rows = truth("futures", "B-ETH_USDT", "1m", now - 10 * MIN, now + 10 * MIN, now=now)
        self.assertEqual(rows[-1]["open_time"], now - now % MIN - MIN)
        self.assertEqual(truth("futures", "B-ETH_USDT", "1m", now - 10 * MIN, now, now=now - 5 * MIN)[-1]["open_time"],
                         (now - 5 * MIN) - (now - 5 * MIN) % MIN - MIN)
        # listing / delisting / calendar intervals
        new = fc.find_pair("futures", "B-NEW_USDT")
        rows = truth("futures", "B-NEW_USDT", "1d", new.onboard - 5 * DAY, new.onboard + 2 * DAY)
        self.assertEqual(rows[0]["open_time"], new.onboard - new.onboard % DAY)
        old = fc.find_pair("futures", "B-OLD_USDT")
        rows = truth("futures", "B-OLD_USDT", "1h", old.end_ms - 2 * HOUR, old.end_ms + 5 * HOUR)
        self.assertEqual([r["open_time"] for r in rows], [old.end_ms - 2 * HOUR, old.end_ms - HOUR])
        rows = truth("futures", "B-BTC_USDT", "1M", 1735689600000, 1743465600000)
        self.assertEqual([r["close_time"] for r in rows], [1738367999999, 1740787199999, 1743465599999])
        rows = truth("spot", "I-BTC_INR", "1d", t0, t0 + 3 * DAY)
        self.assertEqual(len(rows), 3)
        self.assertEqual(rows[0]["market"], "spot")
        self.assertRegex(rows[0]["ws_quote_volume"], r"^\d+\.\d{8}$")
        r = subprocess.run([PY, FAKE, "truth", "spot", "B-PEPE_USDT", "1m", "0", "1"], capture_output=True)
        self.assertEqual(r.returncode, 2)
        pairs = [json.loads(x) for x in run_cli("pairs").splitlines()]
        self.assertIn({"market": "spot", "pair": "I-BTC_INR"}, [{"market": p["market"], "pair": p["pair"]} for p in pairs])
        self.assertEqual(self.control("/_fake/pairs"), pairs)

    def test_rest_and_socket_agree(self):
        """The same instant gives the same bar over REST and over the socket (forming and final)."""
        for market, name, iv in (("futures", "B-BTC_USDT", "1m"), ("futures", "B-PEPE_USDT", "5m"),
                                 ("futures", "B-ID_USDT", "1h"), ("spot", "I-BTC_INR", "1m"),
                                 ("spot", "B-BTTC_USDT", "15m"), ("spot", "G-MLK_USDT", "1d")):
            P = fc.find_pair(market, name)
            o = fc.floor_open(iv, fc.days_from_civil(2025, 7, 7) * DAY + 5 * HOUR)
            dur = fc.next_open(iv, o) - o
            final = fc.gen_bar(P, iv, o)
            last = None
            for frac in (0.0, 0.01, 0.3, 0.5, 0.77, 0.999, 1.0001):
                now = o + int(dur * frac)
                k, closed = fc.bar_at(P, iv, o, now)
                rest = raw_numbers(fc.bar_rest_json(P, k))
                o_, h_, l_, c_, v_, q_ = fc.ws_strings(P, k)
                self.assertEqual([Decimal(rest[x][1]) for x in ("open", "high", "low", "close", "volume")],
                                 [Decimal(x) for x in (o_, h_, l_, c_, v_)], (name, frac))
                self.assertEqual(Decimal(q_), Decimal(v_) * Decimal(fc.fmt(final[13], P.pp)))
                self.assertLessEqual(Decimal(l_), min(Decimal(o_), Decimal(c_)))
                self.assertGreaterEqual(Decimal(h_), max(Decimal(o_), Decimal(c_)))
                self.assertEqual(closed, frac > 1)
                if last is not None:  # a prefix of the final bar: high rises, low falls, volume grows
                    self.assertGreaterEqual(Decimal(h_), last[0])
                    self.assertLessEqual(Decimal(l_), last[1])
                    self.assertGreaterEqual(Decimal(v_), last[2])
                last = (Decimal(h_), Decimal(l_), Decimal(v_))
            tr = fc.truth_row(P, iv, final)
            ws = fc.ws_strings(P, final)
            for i, x in enumerate(("open", "high", "low", "close", "volume")):
                self.assertEqual(Decimal(tr[x]), Decimal(ws[i]))
                self.assertRegex(tr[x], r"^\d+(\.\d*[1-9])?$")
            self.assertEqual(tr["ws_quote_volume"], ws[5])

    # ---- socket.io: handshake ------------------------------------------------------------------
    def test_socketio_http_handshake_and_errors(self):
        st, h, body = self.req("/socket.io/?EIO=4&transport=polling")
        self.assertEqual(st, 200)
        self.assertTrue(body.startswith(b'0{"sid":"'))
        self.assertEqual(okeys(body[1:]), ["sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"])
        self.assertEqual(json.loads(body[1:])["upgrades"], ["websocket"])
        st, h, body = self.req("/socket.io/?EIO=3&transport=polling")
        m = re.match(rb"^(\d+):(0\{.*\})$", body)
        self.assertTrue(m, body)
        self.assertEqual(int(m.group(1)), len(m.group(2)))
        self.assertEqual(len(m.group(2)), 118 - 20 + len(json.loads(m.group(2)[1:])["sid"]))  # the probe's 118
        unknown = b'{"code":1,"message":"Session ID unknown"}'
        if CAPTURES:
            self.assertIn(unknown.decode(), capture("rest-error-bodies.jsonl"))
        for q in ("EIO=4&transport=polling&sid=abc", "EIO=3&transport=polling&sid=abc", "EIO=4&transport=websocket&sid=x"):
            self.assertEqual(self.req("/socket.io/?" + q)[::2], (400, unknown), q)
        self.assertEqual(self.req("/socket.io/?EIO=4&transport=flash")[::2], (400, b'{"code":0,"message":"Transport unknown"}'))
        self.assertEqual(self.req("/socket.io/?EIO=4")[::2], (400, b'{"code":0,"message":"Transport unknown"}'))
        self.assertEqual(self.req("/socket.io/?EIO=4&transport=websocket")[::2], (400, b'{"code":3,"message":"Bad request"}'))
        s = self.stats()["ws"]
        self.assertEqual((s["polling_handshakes"], s["session_unknown"]), (2, 3))

    def test_eio4_connect_join_double_encoding(self):
        self.config(ws_futures_interval_ms=200, ws_spot_interval_ms=300)

        async def go(s, base):
            c = await SIO.connect(s, base, eio=4, do_connect=False)
            self.assertTrue(c.open.startswith("0{"))
            op = json.loads(c.open[1:], object_pairs_hook=OrderedDict)
            self.assertEqual(list(op), ["sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"])
            self.assertEqual((op["upgrades"], op["pingInterval"], op["pingTimeout"], op["maxPayload"]),
                             ([], 25000, 20000, 1000000))
            if CAPTURES:
                cap = capture("socketio-handshake.futures-host.nemanull.txt").splitlines()
                self.assertEqual(okeys(cap[0][1:]), list(op))
                self.assertRegex(cap[1], r'^40\{"sid":"[A-Za-z0-9_-]{20}"\}$')
            self.assertRegex(op["sid"], r"^[A-Za-z0-9_-]{20}$")
            await c.join("B-BTC_USDT_1m-futures")  # before CONNECT: not heard
            self.assertEqual(await c.recv(0.6), "")
            await c.send("40")
            pkt = await c.recv(2)
            self.assertRegex(pkt, r'^40\{"sid":"[A-Za-z0-9_-]{20}"\}$')
            self.assertNotEqual(json.loads(pkt[2:])["sid"], op["sid"])
            self.assertEqual(await c.recv(0.5), "")  # the early join did not count
            await c.join("B-BTC_USDT_1m-futures")
            await c.join("B-BTC_USDT_1m")
            await c.join("I-BTC_INR_15m")
            frames = await c.collect(1.3)
            await c.close()
            return frames

        frames = self.ws(go)
        self.assertTrue(all(f.startswith('42["candlestick",{"event":"candlestick","data":"') for _, f in frames), frames[:3])
        evs = events(frames)
        self.assertEqual(len(evs), len(frames))
        fut = [e for e in evs if e[2].get("pr") == "futures"]
        spot = [e for e in evs if e[2].get("pr") == "spot"]
        self.assertGreaterEqual(len(fut), 5)
        self.assertGreaterEqual(len(spot), 6)
        now = self.server_now()
        # futures: {"data":[bar],"ecode","Ets","pts","i","channel","pr"}; open_time s, close_time s.999
        t, env, d = fut[0]
        self.assertEqual(list(env), ["event", "data"])
        self.assertEqual(okeys(env["data"]), ["data", "ecode", "Ets", "pts", "i", "channel", "pr"])
        bar_text = env["data"][env["data"].index("[") + 1:env["data"].index("]")]
        self.assertEqual(okeys(bar_text), ["open", "close", "high", "low", "volume", "open_time", "close_time",
                                           "pair", "duration", "symbol", "quote_volume"])
        if CAPTURES:
            cap = capture("ws-futures-candlestick-data.tradex.as-published.json")
            self.assertEqual(okeys(cap), ["data", "ecode", "Ets", "pts", "i", "channel", "pr"])
            self.assertEqual(okeys(cap[cap.index("[") + 1:cap.index("]")]), okeys(bar_text))
        b = d["data"][0]
        self.assertEqual(len(d["data"]), 1)
        self.assertEqual((d["i"], d["channel"], d["pr"], d["ecode"], b["pair"], b["duration"], b["symbol"]),
                         ("1m", "B-BTC_USDT_1m-futures", "futures", "B", "B-BTC_USDT", "1m", "BTCUSDT"))
        self.assertIsInstance(b["open_time"], int)
        self.assertIn(b["open_time"] * 1000, (now - now % MIN, (now - 2000) - (now - 2000) % MIN))
        self.assertRegex(bar_text, r'"close_time":%d\.999,' % (b["open_time"] + 59))
        for k in ("open", "close", "high", "low", "volume", "quote_volume"):
            self.assertIsInstance(b[k], str)
        self.assertRegex(b["open"], r"^\d+\.\d{2}$")
        self.assertRegex(b["volume"], r"^\d+\.\d{3}$")
        self.assertRegex(b["quote_volume"], r"^\d+\.\d{5}$")
        self.assertNotIn("x", b)
        self.assertTrue(abs(d["Ets"] - now) < 5000 and d["pts"] >= d["Ets"])
        # spot: the capture's flat object and key order
        t, env, d = [e for e in spot if e[2]["channel"] == "B-BTC_USDT_1m"][0]
        want = ["t", "T", "f", "L", "o", "c", "h", "l", "v", "n", "q", "B", "i", "channel", "s", "x", "V", "Q",
                "eT", "ecode", "pr"]
        self.assertEqual(okeys(env["data"]), want)
        if CAPTURES:
            self.assertEqual(okeys(capture("ws-spot-candlestick-data.tradex.as-published.json")), want)
            doc = json.loads(capture("DOC-EXAMPLE.ws-spot-candlestick-data.json"))
            self.assertEqual(set(doc) - set(want), set())
        self.assertEqual((d["i"], d["s"], d["x"], d["V"], d["Q"], d["f"], d["L"], d["B"], d["ecode"], d["pr"]),
                         ("1m", "BTCUSDT", False, "", "", 0, 0, "0", "B", "spot"))
        self.assertIn(d["t"], (now - now % MIN, (now - 2000) - (now - 2000) % MIN))
        self.assertEqual(d["T"], d["t"] + MIN - 1)
        for k in ("o", "c", "h", "l", "v", "q"):
            self.assertRegex(d[k], r"^\d+\.\d{8}$")
        inr = [e for e in spot if e[2]["channel"] == "I-BTC_INR_15m"]
        self.assertTrue(inr and inr[0][2]["s"] == "BTCINR" and inr[0][2]["ecode"] == "I" and inr[0][2]["i"] == "15m")
        # the forming bar moves, within its final bounds
        k = fc.gen_bar(fc.find_pair("futures", "B-BTC_USDT"), "1m", fut[0][2]["data"][0]["open_time"] * 1000)
        vols = [Decimal(e[2]["data"][0]["volume"]) for e in fut if e[2]["data"][0]["open_time"] == b["open_time"]]
        self.assertEqual(vols, sorted(vols))  # a close frame too: never behind the last frame
        self.assertLessEqual(vols[-1], Decimal(fc.fmt(k[6], 3)))
        st = self.stats()["ws"]
        self.assertEqual((st["joins"], st["connects"], st["eio4_connections"]), (3, 1, 1))
        self.assertEqual(st["events_ignored"], 1)  # the join before CONNECT

    def test_eio3_handshake_and_heartbeat(self):
        self.config(ping_interval_ms=300, ping_timeout_ms=200)

        async def go(s, base):
            c = await SIO.connect(s, base, eio=3)
            r = {"open": c.open, "connect": c.connect_packet}
            await c.join("B-ETH_USDT_1m-futures")
            r["pinged"] = await c.collect(1.2, ping_every=0.2)  # the client pings
            await c.send("2probe")
            r["probe"] = await c.collect(0.3, ping_every=0.2)
            await c.send("40")  # a second CONNECT is answered again
            t_last = time.time()
            r["again"] = await c.collect(0.2)
            await c.collect(1.5)  # no pings: closed interval + timeout after the last packet
            r["closed"] = c.closed
            r["closed_after"] = time.time() - t_last
            c2 = await SIO.connect(s, base, eio=3)
            await c2.send("3")  # a pong from the client: wrong direction
            r["wrong"] = await c2.collect(1)
            r["wrong_closed"] = c2.closed
            c3 = await SIO.connect(s, base, eio=7, query="")  # any EIO but 4 is protocol 3
            r["eio7"] = c3.connect_packet
            await c3.close()
            return r

        r = self.ws(go)
        op = json.loads(r["open"][1:])
        self.assertEqual((op["pingInterval"], op["pingTimeout"], op["upgrades"]), (300, 200, []))
        self.assertEqual(r["connect"], "40")
        texts = [f for _, f in r["pinged"]]
        self.assertNotIn("2", texts)  # the server never pings under EIO3
        self.assertGreaterEqual(texts.count("3"), 4)
        self.assertTrue(any(f.startswith('42["candlestick"') for f in texts))
        self.assertIn("3probe", [f for _, f in r["probe"]])
        self.assertIn("40", [f for _, f in r["again"]])
        self.assertTrue(r["closed"])
        self.assertLess(r["closed_after"], 0.3 + 0.2 + 1.0)  # not the 25 s default
        self.assertTrue(r["wrong_closed"])
        self.assertEqual(r["eio7"], "40")
        st = self.stats()["ws"]
        self.assertGreaterEqual(st["engine_pings_in"], 5)
        self.assertEqual(st["engine_pings_out"], 0)
        self.assertGreaterEqual(st["ping_timeouts"], 1)
        self.assertGreaterEqual(st["heartbeat_direction_errors"], 1)
        self.assertEqual(st["eio3_connections"], 3)

    def test_eio4_server_pings(self):
        self.config(ping_interval_ms=300, ping_timeout_ms=250)

        async def go(s, base):
            r = {}
            c = await SIO.connect(s, base, eio=4)
            t0 = time.time()
            fr = await c.collect(1.6)  # answers every ping
            r["pings"] = [t - t0 for t, f in fr if f == "2"]
            r["alive"] = not c.closed
            t1 = time.time()
            fr = await c.collect(1.5, pong=False)  # stops answering: closed pingInterval + pingTimeout later
            r["closed"] = c.closed
            r["closed_after"] = time.time() - t1
            c2 = await SIO.connect(s, base, eio=4)
            await c2.send("2")  # a client ping under EIO4: wrong direction
            await c2.collect(1)
            r["wrong_closed"] = c2.closed
            return r

        r = self.ws(go)
        self.assertTrue(r["alive"])
        self.assertGreaterEqual(len(r["pings"]), 4)
        self.assertTrue(0.2 < r["pings"][0] < 0.9, r["pings"])
        self.assertTrue(r["closed"])
        self.assertLess(r["closed_after"], 0.3 + 0.25 + 0.9)
        self.assertTrue(r["wrong_closed"])
        st = self.stats()["ws"]
        self.assertGreaterEqual(st["engine_pongs_in"], 4)
        self.assertGreaterEqual(st["engine_pings_out"], 5)
        self.assertGreaterEqual(st["ping_timeouts"], 1)
        self.assertEqual(st["heartbeat_direction_errors"], 1)

    def test_eio4_connect_timeout_namespace_and_parse_errors(self):
        self.config(connect_timeout_ms=400)

        async def go(s, base):
            r = {}
            c = await SIO.connect(s, base, eio=4, do_connect=False)
            await c.collect(1.0)
            r["timeout_closed"] = c.closed
            c = await SIO.connect(s, base, eio=4)
            await c.send("40/admin,")
            r["nsp"] = await c.recv(1)
            await c.send('42["join",{"channelName":"B-BTC_USDT_1m-futures"}')  # JSON cut
            await c.collect(0.5)
            r["bad_json_closed"] = c.closed
            c = await SIO.connect(s, base, eio=4)
            await c.send("9")
            await c.collect(0.5)
            r["bad_type_closed"] = c.closed
            c = await SIO.connect(s, base, eio=4)
            await c.send('42{"join":1}')  # an event that is not an array
            await c.collect(0.5)
            r["bad_event_closed"] = c.closed
            c = await SIO.connect(s, base, eio=3)
            await c.send("40/admin,")
            r["nsp3"] = await c.recv(1)
            await c.close()
            return r

        r = self.ws(go)
        self.assertTrue(r["timeout_closed"])
        self.assertEqual(r["nsp"], '44/admin,{"message":"Invalid namespace"}')
        self.assertEqual(r["nsp3"], '44/admin,"Invalid namespace"')
        self.assertTrue(r["bad_json_closed"] and r["bad_type_closed"] and r["bad_event_closed"])
        st = self.stats()["ws"]
        self.assertEqual(st["connect_timeouts"], 1)
        self.assertEqual(st["parse_errors"], 3)

    def test_silent_channels_leave_and_no_acks(self):
        self.config(ws_futures_interval_ms=150, ws_spot_interval_ms=150)

        async def go(s, base):
            r = {}
            c = await SIO.connect(s, base, eio=4)
            for ch in ("B-BTC_USDT_1m-future", "B-BTC_USDT_5m", "B-BTC_USDT_4h", "B-NOPE_USDT_1m-futures",
                       "B-BTC_USDT_2h-futures", "currentPrices@futures@rt", "THIS_CHANNEL_DOES_NOT_EXIST_xyz",
                       "B-PEPE_USDT_1m", "I-BTC_INR_1m-futures", ""):
                await c.join(ch)
            await c.send('42["join",{"channel":"B-BTC_USDT_1m"}]')  # no channelName
            await c.send('42["join","B-BTC_USDT_1m"]')
            await c.send('42["subscribe",{"channelName":"B-BTC_USDT_1m"}]')
            await c.send('421["join",{"channelName":"B-BTC_USDT_1m-future"}]')  # with an ack id: no ack
            await c.send('42["ping",{"data":"Ping message"}]')
            r["silent"] = await c.collect(1.0)
            await c.join("B-ETH_USDT_1m-futures")
            await c.join("B-ETH_USDT_1m-futures")  # twice: no doubling
            r["one"] = await c.collect(1.2)
            await c.leave("B-ETH_USDT_1m-futures")
            await c.leave("B-ETH_USDT_5m-futures")  # never joined
            await asyncio.sleep(0.2)
            r["after_leave"] = await c.collect(0.8)
            self.config(leave_event=1)
            await c.join("B-ETH_USDT_1m-futures")
            await c.join("B-ETH_USDT_1m")
            await asyncio.sleep(0.3)
            await c.leave("B-ETH_USDT_1m-futures")
            await c.leave("B-ETH_USDT_1m")
            r["left"] = await c.collect(0.5)
            await c.close()
            return r

        r = self.ws(go)
        self.assertEqual([f for _, f in r["silent"] if f != "2"], [])
        ones = events(r["one"])
        self.assertTrue(all(e[2]["channel"] == "B-ETH_USDT_1m-futures" for e in ones))
        self.assertTrue(4 <= len(ones) <= 10, len(ones))  # about 1.2 s / 150 ms, not twice that
        self.assertEqual([f for _, f in r["after_leave"] if f != "2"], [])
        left = [json.loads(f[2:]) for _, f in r["left"] if f.startswith('42["Left Channel"')]
        self.assertEqual(len(left), 1)
        self.assertEqual(json.loads(left[0][1]["data"]), {"channelName": "B-ETH_USDT_1m-futures"})
        st = self.stats()["ws"]
        self.assertEqual(st["joins"], 10 + 1 + 2 + 2)  # the ack-id join counts; bad payloads do not
        self.assertEqual(st["joins_silent"], 10)  # the ack-id join is the same silent channel again
        self.assertEqual(st["leaves"], 4)
        self.assertEqual(st["app_pings_in"], 1)

    def _close_test(self, market, channel, iv_ms, exact):
        self.config(ws_futures_interval_ms=150, ws_spot_interval_ms=150, ws_close_exact=1 if exact else 0,
                    ws_close_lag_ms=1500)
        b = self.set_clock_before_boundary(iv_ms, 1300)

        async def go(s, base):
            c = await SIO.connect(s, base, eio=4)
            await c.join(channel)
            fr = await c.collect(2.6)
            await c.close()
            return fr

        evs = events(self.ws(go))
        now = self.server_now()
        self.assertGreater(now, b + 1000)
        return b, evs, now

    def test_close_frames_futures(self):
        P = fc.find_pair("futures", "B-BTC_USDT")
        for exact in (True, False):
            b, evs, now = self._close_test("futures", "B-BTC_USDT_1m-futures", MIN, exact)
            bars = [(e[2]["Ets"], e[2]["data"][0]) for e in evs]
            before = [x for x in bars if x[1]["open_time"] * 1000 == b - MIN]
            after = [x for x in bars if x[1]["open_time"] * 1000 == b]
            self.assertTrue(before and after, bars)
            self.assertEqual(len(before) + len(after), len(bars))
            # ordered: the old bar's frames, then the new bar's; no close flag anywhere
            idx = [1 if x[1]["open_time"] * 1000 == b else 0 for x in bars]
            self.assertEqual(idx, sorted(idx))
            last_ets, last = before[-1]
            self.assertGreater(last_ets, b - 1)  # sent after the close: the bar's last snapshot
            final = fc.gen_bar(P, "1m", b - MIN)
            tr = truth("futures", "B-BTC_USDT", "1m", b - MIN, b, now=now)[0]
            got = tuple(Decimal(last[k]) for k in ("open", "high", "low", "close", "volume"))
            want = tuple(Decimal(tr[k]) for k in ("open", "high", "low", "close", "volume"))
            if exact:
                self.assertEqual(got, want)
                self.assertEqual(last["quote_volume"], tr["ws_quote_volume"])
            elif Decimal(tr["volume"]) > 0:
                # a bar with trades: the snapshot at the close is not the final bar
                self.assertNotEqual(got, want)
                self.assertLess(Decimal(last["volume"]), Decimal(tr["volume"]))
            else:
                # a bar without a trade has nothing to be short of
                self.assertEqual(Decimal(last["volume"]), 0)
            if not exact:
                # never behind the frame before it
                self.assertGreaterEqual(Decimal(last["volume"]), Decimal(before[-2][1]["volume"]))
            self.assertEqual(last["close_time"], (b - 1) / 1000.0)
            # REST after the close: the final bar, the same as the truth
            body = self.candlesticks("B-BTC_USDT", "1", (b - MIN) // 1000, (b - MIN) // 1000)[0]
            self.assertEqual(rest_rows_as_decimals(raw_numbers(body)["data"]), truth_as_decimals([tr]))
            self.assertEqual(final[6], int(Decimal(tr["volume"]) * 1000))
            self.assertEqual(after[0][1]["open_time"] * 1000, b)

    def test_close_frames_spot(self):
        for exact in (True, False):
            b, evs, now = self._close_test("spot", "B-ETH_USDT_1m", MIN, exact)
            ds = [e[2] for e in evs]
            closed = [d for d in ds if d["x"]]
            self.assertEqual(len(closed), 1, [(d["t"], d["x"]) for d in ds])  # x flips to true once
            self.assertEqual(closed[0]["t"], b - MIN)
            self.assertGreaterEqual(closed[0]["eT"], b)
            seq = [(d["t"], d["x"]) for d in ds]
            i = seq.index((b - MIN, True))
            self.assertTrue(all(t == b - MIN and not x for t, x in seq[:i]))
            self.assertTrue(all(t == b and not x for t, x in seq[i + 1:]) and seq[i + 1:])
            tr = truth("spot", "B-ETH_USDT", "1m", b - MIN, b, now=now)[0]
            got = tuple(Decimal(closed[0][k]) for k in ("o", "h", "l", "c", "v"))
            want = tuple(Decimal(tr[k]) for k in ("open", "high", "low", "close", "volume"))
            if exact:
                self.assertEqual(got, want)
                self.assertEqual(closed[0]["q"], tr["ws_quote_volume"])
            elif want[4] > 0:
                self.assertLess(got[4], want[4])
            else:
                # a bar without a trade has nothing to be short of
                self.assertEqual(got[4], 0)
            body = self.spot("pair=B-ETH_USDT&interval=1m&startTime=%d&endTime=%d" % (b - MIN, b - MIN))[0]
            self.assertEqual(rest_rows_as_decimals(raw_numbers(body)), truth_as_decimals([tr]))

    def test_ws_faults(self):
        self.config(ws_futures_interval_ms=100, ws_spot_interval_ms=100, ping_interval_ms=400, ping_timeout_ms=400)

        async def go(s, base):
            r = {}
            c = await SIO.connect(s, base, eio=4)
            await c.join("B-BTC_USDT_1m-futures")
            await c.join("B-BTC_USDT_1m")
            self.control("/_fake/faults", {"ws_garbage": 0.5, "ws_duplicate": 0.3, "seed": 4})
            r["garbage"] = await c.collect(1.0)
            self.control("/_fake/faults", {"silent_channels": ["B-BTC_USDT_1m"]})
            await c.collect(0.15)  # collect() answers the server's pings; a sleep would not
            r["silent"] = await c.collect(0.8)
            self.control("/_fake/faults", {"ws_delay_ms": 300})
            await c.collect(0.35)
            r["delay"] = await c.collect(1.0)
            self.control("/_fake/faults", {"ws_stall": 1, "ws_stall_ms": 0})
            await c.collect(1.3)
            r["stall"] = await c.collect(1.0)
            r["stall_open"] = not c.closed
            self.control("/_fake/faults", {})
            await c.close()
            c = await SIO.connect(s, base, eio=4)
            self.control("/_fake/faults", {"join_delay_ms": 700})
            await c.join("B-ETH_USDT_1m-futures")
            t0 = time.time()
            fr = await c.collect(1.3)
            r["join_delay_first"] = [t for t, f in fr if f.startswith("42")][0] - t0
            self.control("/_fake/faults", {"ws_drop": 1})
            await c.collect(2.5)
            r["dropped"] = c.closed
            self.control("/_fake/faults", {})
            c = await SIO.connect(s, base, eio=3)
            c2 = await SIO.connect(s, base, eio=4)
            r["drop_endpoint"] = self.control("/_fake/drop", {"how": "abort"})
            await c.collect(0.5)
            await c2.collect(0.5)
            r["both_closed"] = c.closed and c2.closed
            return r

        r = self.ws(go)
        g = [f for _, f in r["garbage"]]
        good = events(r["garbage"])
        self.assertGreater(len(g), len(good))
        self.assertTrue(any(f in fc.WS_GARBAGE for f in g))
        texts = [f for f in g if f.startswith('42["candlestick"') and f not in fc.WS_GARBAGE]
        self.assertGreater(len(texts), len(set(texts)))  # duplicates
        self.assertTrue(all(e[2]["pr"] == "futures" for e in events(r["silent"])))
        self.assertTrue(events(r["silent"]))
        dl = events(r["delay"])
        self.assertTrue(dl)
        lags = [t * 1000 - (e["pts"] if e["pr"] == "futures" else e["eT"]) for t, env, e in dl]
        self.assertGreater(min(lags), 250)
        st = self.stats()
        self.assertGreater(st["faults"]["delayed_ticks"], 0)
        self.assertEqual([f for _, f in r["stall"]], [])
        self.assertTrue(r["stall_open"])
        self.assertGreater(r["join_delay_first"], 0.6)
        self.assertTrue(r["dropped"])
        self.assertEqual(r["drop_endpoint"], {"dropped": 2})
        self.assertTrue(r["both_closed"])
        self.assertGreaterEqual(st["faults"]["ws_drop"], 1)
        self.assertGreater(st["faults"]["silenced_frames"], 0)
        self.assertGreater(st["ws"]["garbage_frames"], 0)
        self.assertEqual(st["faults"]["delayed_joins"], 1)

    def test_app_ping_timeout_and_stats(self):
        self.config(app_ping_timeout_ms=500, ws_futures_interval_ms=200)

        async def go(s, base):
            r = {}
            c = await SIO.connect(s, base, eio=4)
            await c.join("B-BTC_USDT_5m-futures")
            for _ in range(6):
                await c.send('42["ping",{"data":"Ping message"}]')
                fr = await c.collect(0.2)
            r["alive"] = not c.closed
            r["stats_mid"] = self.stats()["ws"]
            await c.collect(1.0)
            r["closed"] = c.closed
            del fr
            return r

        r = self.ws(go)
        self.assertTrue(r["alive"])
        self.assertTrue(r["closed"])
        mid = r["stats_mid"]
        self.assertEqual(mid["connections_open"], 1)
        self.assertEqual(mid["channels"], {"B-BTC_USDT_5m-futures": 1})
        self.assertEqual(mid["channels_joined"], 1)
        self.assertEqual(mid["app_pings_in"], 6)
        st = self.stats()["ws"]
        self.assertEqual(st["app_ping_timeouts"], 1)
        self.assertGreater(st["frames_sent"], st["candle_frames_sent"])  # the open, 40, pings
        self.assertEqual(st["candle_frames_sent"], st["futures_frames_sent"])
        self.assertEqual(st["connections_open"], 0)

    def test_firehose(self):
        self.config(ws_futures_interval_ms=100000, ws_spot_interval_ms=100000)

        async def go(s, base):
            c = await SIO.connect(s, base, eio=4)
            await c.join("B-BTC_USDT_1m-futures")
            await c.join("B-BTC_USDT_1m")
            t0 = fc.days_from_civil(2025, 1, 1) * DAY
            await c.collect(0.4)  # the first push of the forming bars
            res = self.control("/_fake/firehose", {"frames": 300, "start_ms": t0})
            fr = await c.collect(1.5)
            await c.close()
            return res, fr, t0

        res, fr, t0 = self.ws(go)
        self.assertEqual(res, {"connections": 1, "frames": 600})
        evs = events(fr)
        fut = [e[2]["data"][0]["open_time"] * 1000 for e in evs if e[2]["pr"] == "futures"]
        spot = [e[2] for e in evs if e[2]["pr"] == "spot"]
        self.assertEqual(fut, [t0 + i * MIN for i in range(300)])
        self.assertEqual([d["t"] for d in spot], [t0 + i * MIN for i in range(300)])
        self.assertTrue(all(d["x"] for d in spot))
        tr = truth("futures", "B-BTC_USDT", "1m", t0, t0 + 3 * MIN)
        first = [e[2]["data"][0] for e in evs if e[2]["pr"] == "futures"][:3]
        self.assertEqual([Decimal(b["close"]) for b in first], [Decimal(r["close"]) for r in tr])
        self.assertEqual(self.stats()["ws"]["firehose_frames"], 600)

    def test_control_endpoints(self):
        cfg = self.control("/_fake/config")
        self.assertEqual(set(cfg), set(fc.DEFAULT_CONFIG))
        for bad in ({"nope": 1}, {"ping_interval_ms": "x"}, {"ping_interval_ms": 0}, {"rate_limit": 1.5},
                    {"ws_close_exact": True}):
            st, _, body = self.req("/_fake/config", "POST", bad)
            self.assertEqual(st, 400, bad)
        self.assertEqual(self.control("/_fake/config"), cfg)
        self.assertEqual(self.req("/_fake/nope")[0], 404)
        self.assertEqual(self.req("/_fake/drop", "POST", {"how": "gently"})[0], 400)
        for bad in ({"silent_channels": "B-BTC_USDT_1m"}, {"ws_delay_ms": -1}, {"script": ["explode"]}):
            self.assertEqual(self.req("/_fake/faults", "POST", bad)[0], 400, bad)
        self.req("/market_data/candles?pair=B-BTC_USDT&interval=1m&limit=2")
        st = self.stats()
        self.assertEqual(st["requests"], {"/market_data/candles": 1})
        self.assertEqual(st["responses_by_status"], {"200": 1})
        self.assertEqual(st["rows"]["candles"], 2)
        self.control("/_fake/reset", {})
        self.assertEqual(self.stats()["requests"], {})


if __name__ == "__main__":
    unittest.main()

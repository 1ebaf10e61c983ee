"""Self-test of the fake Binance USD-M exchange.

Run:  /usr/bin/python3 -m unittest discover -s test/fake_exchange -v
"""

import asyncio
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
FAKE = os.path.join(HERE, "fake_binance.py")
PY = "/usr/bin/python3"
sys.path.insert(0, HERE)
import fake_binance as fb  # noqa: E402

MIN = 60_000
HOUR = 3_600_000
DAY = 86_400_000

DEFAULT_CONFIG = {"weight_limit": 100000, "ban_after": 5, "ban_seconds": 120, "clock_offset_ms": 0,
                  "ws_interval_ms": 250, "ws_max_streams": 200, "ws_max_lifetime": 86400,
                  "ws_ping_interval": 180, "ws_pong_timeout": 600, "ws_max_msg_rate": 10,
                  "board_epoch": 0, "quote_volumes": {}, "funding_limit": 500, "oi_limit": 1000,
                  "oi_timestamp_as_string": 0, "oi_weight_header": 1, "ws_subscribe_delay_ms": 0,
                  "ws_close_every_ms": 0, "ws_forming": 1}


def run_cli(*args):
    r = subprocess.run([PY, FAKE] + list(args), capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise AssertionError("cli %s failed: %s" % (args, r.stderr))
    return r.stdout


class FakeBinanceTest(unittest.TestCase):
    proc = None
    port = None

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        pf = os.path.join(cls.tmp.name, "port")
        cls.errlog = open(os.path.join(cls.tmp.name, "stderr"), "w+")
        cls.proc = subprocess.Popen([PY, FAKE, "serve", "--port", "0", "--port-file", pf,
                                     "--weight-limit", "100000", "--seed", "3"],
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
        assert line.strip() == "fake_binance listening on 127.0.0.1:%d" % cls.port, line

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
    def req(self, path, method="GET", body=None, timeout=10):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            c.request(method, path, body=json.dumps(body) if body is not None else None)
            r = c.getresponse()
            data = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data
        finally:
            c.close()

    def get_json(self, path):
        st, h, data = self.req(path)
        return st, h, json.loads(data) if data else None

    def get_from(self, src, path, timeout=10):
        """GET from the source address `src` (127.0.0.0/8 all reaches the loopback listener)."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout, source_address=(src, 0))
        try:
            c.request("GET", path)
            r = c.getresponse()
            data = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, json.loads(data) if data else None
        finally:
            c.close()

    def control(self, path, body=None):
        st, _, data = self.req(path, "POST" if body is not None else "GET", body)
        self.assertEqual(st, 200, data)
        return json.loads(data)

    def setUp(self):
        self.control("/_fake/faults", {})
        self.control("/_fake/config", DEFAULT_CONFIG)
        self.control("/_fake/reset", {})

    def server_time(self):
        return self.get_json("/fapi/v1/time")[2]["serverTime"]

    def klines(self, **params):
        q = "&".join("%s=%s" % kv for kv in params.items())
        st, h, body = self.get_json("/fapi/v1/klines?" + q)
        self.assertEqual(st, 200, body)
        return body, h

    def symbol(self, name):
        return fb.build_symbols(None, 0)[[s.name for s in fb.build_symbols(None, 0)].index(name)]

    @staticmethod
    def avoid_minute_edge(margin=3.0):
        s = time.time() % 60
        if s > 60 - margin:
            time.sleep(60 - s + 0.05)

    # ---- basic endpoints --------------------------------------------------------------------
    def test_time_and_headers(self):
        t0 = int(time.time() * 1000)
        st, h, body = self.get_json("/fapi/v1/time")
        self.assertEqual(st, 200)
        self.assertLess(abs(body["serverTime"] - t0), 2000)
        self.assertEqual(h["content-type"], "application/json")
        self.assertEqual(h["x-mbx-used-weight-1m"], "1")

    def test_exchange_info(self):
        st, h, info = self.get_json("/fapi/v1/exchangeInfo")
        self.assertEqual(st, 200)
        for k in ("timezone", "serverTime", "futuresType", "rateLimits", "exchangeFilters", "assets", "symbols"):
            self.assertIn(k, info)
        self.assertEqual(info["timezone"], "UTC")
        self.assertEqual(info["exchangeFilters"], [])
        rl = {(r["rateLimitType"], r["interval"], r["intervalNum"]): r["limit"] for r in info["rateLimits"]}
        self.assertEqual(rl, {("REQUEST_WEIGHT", "MINUTE", 1): 100000, ("ORDERS", "MINUTE", 1): 1200,
                              ("ORDERS", "SECOND", 10): 300})
        syms = {s["symbol"]: s for s in info["symbols"]}
        self.assertEqual(set(syms), {"BTCUSDT", "ETHUSDT", "NEWUSDT", "DOGEUSDT", "OLDUSDT", "BTCUSDT_261225"})
        capture = "/work/shared/exchange-data/binance-usdm/exchange-info.json"
        keys = set()
        if os.path.exists(capture):
            with open(capture) as f:
                keys = set(json.load(f)["symbols"][0])
        for s in syms.values():
            self.assertTrue(keys <= set(s), keys - set(s))
            ft = {f["filterType"]: f for f in s["filters"]}
            self.assertIn("tickSize", ft["PRICE_FILTER"])
            self.assertIn("stepSize", ft["LOT_SIZE"])
        b = syms["BTCUSDT"]
        self.assertEqual((b["contractType"], b["status"], b["onboardDate"], b["quoteAsset"]),
                         ("PERPETUAL", "TRADING", 1569398400000, "USDT"))
        self.assertEqual(b["deliveryDate"], 4133404800000)
        self.assertEqual(syms["ETHUSDT"]["onboardDate"], 1574812800000)
        today = int(time.time() * 1000) // DAY * DAY
        self.assertEqual(syms["NEWUSDT"]["onboardDate"], today - 10 * DAY)
        self.assertEqual(syms["OLDUSDT"]["status"], "SETTLING")
        self.assertEqual(syms["BTCUSDT_261225"]["contractType"], "CURRENT_QUARTER")
        self.assertEqual(h["x-mbx-used-weight-1m"], "1")

    def test_unknown_path_404(self):
        st, h, data = self.req("/fapi/v1/nothing")
        self.assertEqual(st, 404)
        self.assertIn("x-mbx-used-weight-1m", h)

    # ---- klines shape, weights --------------------------------------------------------------
    def test_klines_weight_by_limit(self):
        for limit, w in ((1, 1), (99, 1), (100, 2), (499, 2), (500, 5), (1000, 5), (1001, 10), (1500, 10)):
            self.control("/_fake/reset", {})
            self.avoid_minute_edge(1)
            rows, h = self.klines(symbol="BTCUSDT", interval="1m", limit=limit)
            self.assertEqual(len(rows), limit)
            self.assertEqual(h["x-mbx-used-weight-1m"], str(w), limit)
        self.control("/_fake/reset", {})
        rows, h = self.klines(symbol="BTCUSDT", interval="1m")  # default limit 500
        self.assertEqual((len(rows), h["x-mbx-used-weight-1m"]), (500, "5"))

    def check_rows(self, rows, iv, S):
        for i, r in enumerate(rows):
            self.assertEqual(len(r), 12)
            o, O, H, L, C, v, c, q, n, V, Q, ign = r
            self.assertIsInstance(o, int)
            self.assertIsInstance(c, int)
            self.assertIsInstance(n, int)
            self.assertEqual(ign, "0")
            for p in (O, H, L, C):
                self.assertEqual(len(p.split(".")[1]) if "." in p else 0, S.pp, p)
            for x in (v, V):
                self.assertEqual(len(x.split(".")[1]) if "." in x else 0, S.qp, x)
            for x in (q, Q):
                self.assertEqual(len(x.split(".")[1]) if "." in x else 0, S.qd, x)
            self.assertEqual(c, fb.next_open(iv, o) - 1)
            self.assertGreaterEqual(float(H), max(float(O), float(C)))
            self.assertLessEqual(float(L), min(float(O), float(C)))
            self.assertLessEqual(float(V), float(v))
            self.assertLessEqual(float(Q), float(q))
            self.assertGreaterEqual(n, 0)
            if float(v) == 0:
                self.assertEqual((O, H, L, n), (C, C, C, 0))
            elif n:
                vwap = float(q) / float(v)
                self.assertTrue(float(L) * (1 - 1e-12) <= vwap <= float(H) * (1 + 1e-12), r)
            if i:
                self.assertEqual(o, rows[i - 1][6] + 1)

    def test_klines_shape(self):
        for sym in ("BTCUSDT", "ETHUSDT", "NEWUSDT"):
            S = self.symbol(sym)
            for iv in ("1m", "5m", "1h", "1d", "1w", "1M"):
                rows, _ = self.klines(symbol=sym, interval=iv, limit=300)
                self.assertTrue(rows)
                self.check_rows(rows, iv, S)
        rows, _ = self.klines(symbol="BTCUSDT", interval="1m", limit=3)
        self.assertEqual(len(rows[0][1].split(".")[1]), 2)  # "43125.10" style

    def test_zero_volume_candles_exist(self):
        S = self.symbol("BTCUSDT")
        t = 1_700_000_000_000 // MIN * MIN
        zeros = [fb.gen_candle(S, "1m", t + i * MIN) for i in range(3000)]
        zeros = [k for k in zeros if k[6] == 0]
        self.assertTrue(zeros)
        row = json.loads(fb.row_json(S, zeros[0]))
        self.assertEqual(row[5], "0.000")
        self.assertEqual(row[8], 0)
        self.assertEqual(len({row[1], row[2], row[3], row[4]}), 1)

    # ---- alignment --------------------------------------------------------------------------
    def test_interval_alignment(self):
        for iv, check in (
                ("1d", lambda o: o % DAY == 0),
                ("4h", lambda o: o % (4 * HOUR) == 0),
                ("3d", lambda o: o % (3 * DAY) == 0),
                ("1w", lambda o: (o // DAY + 3) % 7 == 0),  # 1970-01-01 was a Thursday -> Monday
                ("1M", lambda o: fb.civil_from_days(o // DAY)[2] == 1 and o % DAY == 0)):
            rows, _ = self.klines(symbol="BTCUSDT", interval=iv, limit=60)
            for r in rows:
                self.assertTrue(check(r[0]), (iv, r[0]))
        rows, _ = self.klines(symbol="BTCUSDT", interval="1M", startTime=fb.month_start(2024, 1), limit=14)
        self.assertEqual(rows[1][0], fb.month_start(2024, 2))
        self.assertEqual(rows[1][6], fb.month_start(2024, 3) - 1)  # leap February
        self.assertEqual(rows[12][0], fb.month_start(2025, 1))

    # ---- truth == REST ----------------------------------------------------------------------
    def truth_rows(self, sym, iv, start, end, now=None):
        args = ["truth", sym, iv, str(start), str(end)]
        if now is not None:
            args += ["--now", str(now)]
        out = run_cli(*args)
        return [ln.split(",") for ln in out.splitlines()]

    def test_truth_equals_closed_rest_rows(self):
        now = self.server_time()
        cases = (("BTCUSDT", "1m", now - 1000 * MIN, 1000), ("ETHUSDT", "1h", now - 1200 * HOUR, 1500),
                 ("BTCUSDT", "1w", fb.days_from_civil(2019, 1, 1) * DAY, 500),
                 ("ETHUSDT", "1M", 0, 500), ("NEWUSDT", "1m", now - 20 * DAY, 1500))
        for sym, iv, start, limit in cases:
            rows, _ = self.klines(symbol=sym, interval=iv, startTime=start, limit=limit)
            st = self.server_time()
            closed = [r for r in rows if r[6] < st]
            self.assertGreater(len(closed), 10, (sym, iv))
            self.assertLessEqual(len(rows) - len(closed), 1)
            truth = self.truth_rows(sym, iv, start, closed[-1][0] + 1, now=st)
            self.assertEqual(len(truth), len(closed), (sym, iv))
            for t, r in zip(truth, closed):
                self.assertEqual(t[0], sym)
                self.assertEqual([int(t[1]), int(t[2])], [r[0], r[6]])
                self.assertEqual(t[3:8] + t[8:9], r[1:6] + [r[7]])
                self.assertEqual(int(t[9]), r[8])
                self.assertEqual(t[10:12], r[9:11])

    def test_truth_respects_listing_and_now(self):
        S = self.symbol("NEWUSDT")
        now = int(time.time() * 1000)
        rows = self.truth_rows("NEWUSDT", "1h", S.onboard - 5 * DAY, now + DAY)
        self.assertEqual(int(rows[0][1]), S.onboard)
        self.assertLess(int(rows[-1][2]), now)
        self.assertGreater(int(rows[-1][2]), now - HOUR - 1)
        self.assertEqual(len(rows), (int(rows[-1][1]) - S.onboard) // HOUR + 1)

    def test_truth_month_of_minutes(self):
        end = 1_700_000_000_000 // DAY * DAY
        out = run_cli("truth", "BTCUSDT", "1m", str(end - 30 * DAY), str(end))
        self.assertEqual(len(out.splitlines()), 43200)

    def test_pinned_day(self):
        # a test crossing midnight pins the day NEWUSDT is listed from
        day = 1_700_000_000_000 // DAY * DAY
        env = dict(os.environ, FAKE_BINANCE_TODAY_MS=str(day + 12 * HOUR))
        out = subprocess.run([PY, FAKE, "truth", "NEWUSDT", "1d", str(day - 20 * DAY), str(day)],
                             env=env, check=True, capture_output=True, text=True).stdout
        first = out.splitlines()[0].split(",")
        self.assertEqual(int(first[1]), day - 10 * DAY)
        self.assertEqual(len(out.splitlines()), 10)

    def test_pages_cli(self):
        start = 1_700_000_000_000 // MIN * MIN
        out = run_cli("pages", "BTCUSDT", "1m", str(start + 30_000), "1000", "--limit", "499")
        pages = [json.loads(ln) for ln in out.splitlines()]
        self.assertEqual([len(p) for p in pages], [499, 499, 2])
        rows = [r for p in pages for r in p]
        self.assertEqual(rows[0][0], start + MIN)  # startTime inside a candle -> next candle
        truth = self.truth_rows("BTCUSDT", "1m", start + MIN, start + 1001 * MIN)
        self.assertEqual([int(t[1]) for t in truth], [r[0] for r in rows])
        self.assertEqual([t[6] for t in truth], [r[4] for r in rows])

    # ---- DOGEUSDT's daily maintenance window ------------------------------------------------
    def test_maintenance_window_rest(self):
        day = (self.server_time() - 3 * DAY) // DAY * DAY
        w0, w1 = day + 3 * HOUR, day + 3 * HOUR + 30 * MIN

        def opens(**q):
            return [r[0] for r in self.klines(symbol="DOGEUSDT", **q)[0]]
        # a page across the window skips it and still has `limit` rows
        self.assertEqual(opens(interval="1m", startTime=w0 - 10 * MIN, limit=20),
                         [w0 - (10 - i) * MIN for i in range(10)] + [w1 + i * MIN for i in range(10)])
        self.assertEqual(opens(interval="1m", startTime=w0 - 2 * MIN, endTime=w1 - 1),
                         [w0 - 2 * MIN, w0 - MIN])  # endTime inside the window
        self.assertEqual(opens(interval="1m", startTime=w0 + 7 * MIN, limit=2), [w1, w1 + MIN])  # start inside
        self.assertEqual(opens(interval="1m", endTime=w1 - 1, limit=3), [w0 - 3 * MIN, w0 - 2 * MIN, w0 - MIN])
        self.assertEqual(opens(interval="1m", startTime=w0, endTime=w1 - 1), [])
        # every interval shorter than 1d loses the candles overlapping 03:00-03:30, longer ones nothing
        self.assertEqual(opens(interval="15m", startTime=w0 - 15 * MIN, limit=2), [w0 - 15 * MIN, w1])
        self.assertEqual(opens(interval="1h", startTime=day, limit=4), [day, day + HOUR, day + 2 * HOUR, day + 4 * HOUR])
        self.assertEqual(opens(interval="4h", startTime=day, limit=2), [day + 4 * HOUR, day + 8 * HOUR])
        self.assertEqual(opens(interval="12h", startTime=day, limit=2), [day + 12 * HOUR, day + 36 * HOUR])
        self.assertEqual(opens(interval="1d", startTime=day, limit=3), [day, day + DAY, day + 2 * DAY])
        self.assertEqual(len(opens(interval="1m", startTime=day, endTime=day + DAY - 1, limit=1500)), 1440 - 30)
        # the most recent candles without startTime: `limit` of them, none inside a window
        recent = opens(interval="5m", limit=1000)
        self.assertEqual(len(recent), 1000)
        self.assertFalse([o for o in recent if 3 * HOUR <= o % DAY < 3 * HOUR + 30 * MIN])
        # 1000 x 5m is 3.5 days less the windows: the 02:55 candle of every day they span
        lo, hi = min(recent), max(recent)
        days = [d + 2 * HOUR + 55 * MIN for d in range(lo - lo % DAY, hi + 1, DAY)]
        self.assertEqual(len([o for o in recent if o % DAY == 2 * HOUR + 55 * MIN]),
                         len([t for t in days if lo <= t <= hi]))
        self.assertIn(len([t for t in days if lo <= t <= hi]), (3, 4))
        # the listing day: 2020-01-01 00:00, whose 4h candle overlaps the window
        S = self.symbol("DOGEUSDT")
        self.assertEqual(opens(interval="4h", startTime=0, limit=1), [S.onboard + 4 * HOUR])
        # other symbols have no window
        self.assertEqual([r[0] for r in self.klines(symbol="BTCUSDT", interval="1m", startTime=w0, limit=2)[0]],
                         [w0, w0 + MIN])

    def test_maintenance_window_truth_equals_rest(self):
        now = self.server_time()
        for iv, start, limit in (("1m", now - 3 * DAY, 1500), ("1h", now - 100 * DAY, 1000), ("4h", now - 300 * DAY, 499)):
            walked, st = [], start
            while True:
                page, _ = self.klines(symbol="DOGEUSDT", interval=iv, startTime=st, endTime=now - 1, limit=limit)
                walked += page
                if len(page) < limit:
                    break
                self.assertEqual(len(page), limit)
                st = page[-1][0] + 1
            st = self.server_time()
            closed = [r for r in walked if r[6] < st]
            truth = self.truth_rows("DOGEUSDT", iv, start, closed[-1][0] + 1, now=st)
            self.assertEqual([int(t[1]) for t in truth], [r[0] for r in closed], iv)
            self.assertEqual([t[3:8] for t in truth], [r[1:6] for r in closed], iv)
            holes = [b[0] - a[6] - 1 for a, b in zip(closed, closed[1:]) if b[0] != a[6] + 1]
            self.assertTrue(holes, iv)
            self.assertEqual(set(holes), {{"1m": 30 * MIN, "1h": HOUR, "4h": 4 * HOUR}[iv]}, iv)
        # the pages CLI: what REST serves page after page
        start = now - 5 * DAY
        pages = [json.loads(ln) for ln in run_cli("pages", "DOGEUSDT", "1m", str(start), "3000",
                                                  "--limit", "1500").splitlines()]
        served = self.klines(symbol="DOGEUSDT", interval="1m", startTime=start, limit=1500)[0]
        served += self.klines(symbol="DOGEUSDT", interval="1m", startTime=served[-1][0] + 1, limit=1500)[0]
        self.assertEqual([r[0] for p in pages for r in p], [r[0] for r in served])

    # ---- paging semantics -------------------------------------------------------------------
    def test_start_end_limit_semantics(self):
        now = self.server_time()
        base = (now - 3 * DAY) // HOUR * HOUR
        rows, _ = self.klines(symbol="BTCUSDT", interval="1h", startTime=base, limit=5)
        self.assertEqual([r[0] for r in rows], [base + i * HOUR for i in range(5)])
        rows, _ = self.klines(symbol="BTCUSDT", interval="1h", startTime=base + 1, limit=5)
        self.assertEqual(rows[0][0], base + HOUR)  # mid-candle start skips to next open
        rows, _ = self.klines(symbol="BTCUSDT", interval="1h", startTime=base, endTime=base + 3 * HOUR)
        self.assertEqual(rows[-1][0], base + 3 * HOUR)  # endTime equal to an open time: included
        rows, _ = self.klines(symbol="BTCUSDT", interval="1h", startTime=base, endTime=base + 3 * HOUR - 1)
        self.assertEqual(rows[-1][0], base + 2 * HOUR)  # endTime inside a candle: that candle is last
        rows, _ = self.klines(symbol="BTCUSDT", interval="1h", startTime=base, endTime=base + 50 * HOUR, limit=10)
        self.assertEqual([r[0] for r in rows], [base + i * HOUR for i in range(10)])  # limit from start
        rows, _ = self.klines(symbol="BTCUSDT", interval="1h", endTime=base + 10 * HOUR + 5, limit=4)
        self.assertEqual([r[0] for r in rows], [base + (7 + i) * HOUR for i in range(4)])  # latest before end
        rows, _ = self.klines(symbol="BTCUSDT", interval="1h", startTime=now + DAY)
        self.assertEqual(rows, [])
        rows, _ = self.klines(symbol="BTCUSDT", interval="1h", startTime=base, endTime=base)
        self.assertEqual(len(rows), 1)
        # walking pages forward == one big request
        base -= 10 * DAY
        big, _ = self.klines(symbol="ETHUSDT", interval="5m", startTime=base, limit=1200)
        walked, st = [], base
        while len(walked) < 1200:
            page, _ = self.klines(symbol="ETHUSDT", interval="5m", startTime=st, limit=min(499, 1200 - len(walked)))
            walked += page
            st = page[-1][0] + 5 * MIN
        self.assertEqual([r[0] for r in walked], [r[0] for r in big])
        self.assertEqual(walked, big)

    def test_most_recent_and_forming(self):
        t0 = self.server_time()
        rows, _ = self.klines(symbol="BTCUSDT", interval="1h", limit=3)
        t1 = self.server_time()
        last = rows[-1]
        self.assertLessEqual(last[0], t1)
        self.assertGreater(last[6], t0)  # forming: closeTime > serverTime
        self.assertLess(rows[-2][6], t0)
        S = self.symbol("BTCUSDT")
        truth = fb.gen_candle(S, "1h", last[0])
        final = json.loads(fb.row_json(S, truth))
        self.assertNotEqual(last, final)
        self.assertLessEqual(float(last[2]), float(final[2]))
        self.assertGreaterEqual(float(last[3]), float(final[3]))
        self.assertLess(float(last[5]), float(final[5]))
        self.assertLessEqual(last[8], final[8])
        self.assertEqual(last[1], final[1])
        # forming values only grow as time goes on
        time.sleep(0.3)
        rows2, _ = self.klines(symbol="BTCUSDT", interval="1h", limit=1)
        if rows2[0][0] == last[0]:
            self.assertGreaterEqual(float(rows2[0][5]), float(last[5]))
            self.assertGreaterEqual(float(rows2[0][2]), float(last[2]))

    def test_partial_candle_properties(self):
        S = self.symbol("ETHUSDT")
        o = 1_700_000_000_000 // HOUR * HOUR
        k = fb.gen_candle(S, "1h", o)
        prev = None
        for i in range(0, 101):
            p = fb.partial_candle(S, k, i / 100.0)
            self.assertLessEqual(p[3], k[3])
            self.assertGreaterEqual(p[4], k[4])
            self.assertTrue(p[4] <= p[5] <= p[3])
            if prev:
                for j in (3, 6, 8, 9):
                    self.assertGreaterEqual(p[j], prev[j])
                self.assertLessEqual(p[4], prev[4])
            prev = p
        self.assertEqual(fb.partial_candle(S, k, 1.0), k)
        self.assertNotEqual(fb.partial_candle(S, k, 0.99)[6], k[6])

    def test_listing_and_delisting(self):
        S = self.symbol("NEWUSDT")
        rows, _ = self.klines(symbol="NEWUSDT", interval="1h", startTime=S.onboard - 3 * DAY, limit=5)
        self.assertEqual(rows[0][0], S.onboard)
        rows, _ = self.klines(symbol="NEWUSDT", interval="1h", endTime=S.onboard - 1)
        self.assertEqual(rows, [])
        rows, _ = self.klines(symbol="NEWUSDT", interval="1m", startTime=0, limit=3)
        self.assertEqual(rows[0][0], S.onboard)
        old = self.symbol("OLDUSDT")
        rows, _ = self.klines(symbol="OLDUSDT", interval="1d", limit=5)
        self.assertEqual(rows[-1][6], old.end_ms - 1)
        self.assertLess(rows[-1][6], self.server_time())

    # ---- errors -----------------------------------------------------------------------------
    def test_error_bodies(self):
        cases = (
            ("symbol=BTCUSDT&interval=1s", -1120, "Invalid interval."),
            ("symbol=FOOUSDT&interval=1m", -1121, "Invalid symbol."),
            ("symbol=btcusdt&interval=1m", -1121, "Invalid symbol."),
            ("interval=1m", -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."),
            ("symbol=BTCUSDT", -1102, "Mandatory parameter 'interval' was not sent, was empty/null, or malformed."),
            ("symbol=BTCUSDT&interval=1m&limit=1501", -1130, "Data sent for parameter 'limit' is not valid."),
            ("symbol=BTCUSDT&interval=1m&limit=0", -1130, "Data sent for parameter 'limit' is not valid."),
            ("symbol=BTCUSDT&interval=1m&startTime=10&endTime=9", -1023, "Start time is greater than end time."),
            ("symbol=BTCUSDT&interval=1m&startTime=x1", -1100,
             "Illegal characters found in parameter 'startTime'; legal range is '^[0-9]{1,20}$'."),
            ("symbol=BTCUSDT&interval=1m&limit=-5", -1100,
             "Illegal characters found in parameter 'limit'; legal range is '^[0-9]{1,20}$'."),
            ("symbol=BTCUSDT&symbol=BTCUSDT&interval=1m", -1101, "Duplicate values for a parameter detected."),
        )
        for qs, code, msg in cases:
            st, h, body = self.get_json("/fapi/v1/klines?" + qs)
            self.assertEqual(st, 400, qs)
            self.assertEqual(body, {"code": code, "msg": msg}, qs)
            self.assertEqual(h["content-type"], "application/json")
            self.assertIn("x-mbx-used-weight-1m", h)

    # ---- rate limit / ban -------------------------------------------------------------------
    def test_429_then_418(self):
        self.avoid_minute_edge(4)
        self.control("/_fake/config", {"weight_limit": 10, "ban_after": 2, "ban_seconds": 1})
        self.control("/_fake/reset", {})
        for i in range(10):
            st, h, _ = self.req("/fapi/v1/time")
            self.assertEqual((st, h["x-mbx-used-weight-1m"]), (200, str(i + 1)))
        st, h, body = self.get_json("/fapi/v1/time")
        self.assertEqual(st, 429)
        self.assertEqual(body, {"code": -1003, "msg": "Too many requests; current limit of IP(127.0.0.1) is 10 "
                                "requests per minute. Please use the websocket for live updates to avoid polling the API."})
        self.assertEqual(h["x-mbx-used-weight-1m"], "11")
        self.assertTrue(1 <= int(h["retry-after"]) <= 60)
        st, _, _ = self.req("/fapi/v1/time")
        self.assertEqual(st, 429)
        st, h, body = self.get_json("/fapi/v1/time")
        self.assertEqual(st, 418)
        self.assertRegex(body["msg"], r"^Way too many requests; IP\(127\.0\.0\.1\) banned until \d{13}\. "
                                      r"Please use the websocket for live updates to avoid bans\.$")
        self.assertEqual(body["code"], -1003)
        self.assertEqual(h["retry-after"], "1")
        until = int(body["msg"].split("until ")[1][:13])
        for _ in range(3):
            st, h, _ = self.req("/fapi/v1/klines?symbol=BTCUSDT&interval=1m")
            self.assertEqual(st, 418)
        stats = self.control("/_fake/stats")
        self.assertEqual((stats["rate_limited_429"], stats["banned_418"]), (2, 4))
        self.assertEqual(stats["banned_until"], until)
        # ban over and limit raised -> served again
        self.control("/_fake/config", {"weight_limit": 100000})
        time.sleep(max(0, until - int(time.time() * 1000)) / 1000.0 + 0.05)
        st, _, _ = self.req("/fapi/v1/time")
        self.assertEqual(st, 200)

    # ---- faults -----------------------------------------------------------------------------
    def raw_get(self, path, timeout=5):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        c.request("GET", path)
        return c, c.getresponse()

    K = "/fapi/v1/klines?symbol=BTCUSDT&interval=1m&limit=100"

    def test_fault_truncate(self):
        self.control("/_fake/faults", {"script": ["truncate"]})
        c, r = self.raw_get(self.K)
        self.assertEqual(r.status, 200)
        n = int(r.getheader("Content-Length"))
        with self.assertRaises(http.client.IncompleteRead) as cm:
            r.read()
        self.assertEqual(len(cm.exception.partial), n // 2)
        c.close()
        self.assertEqual(self.control("/_fake/stats")["faults"]["truncate"], 1)
        st, _, _ = self.req(self.K)  # next request is healthy
        self.assertEqual(st, 200)

    def test_fault_truncate_json_and_garbage(self):
        for f in ("truncate_json", "garbage"):
            self.control("/_fake/faults", {"script": [f]})
            c, r = self.raw_get(self.K)
            data = r.read()
            c.close()
            self.assertEqual(r.status, 200)
            self.assertEqual(int(r.getheader("Content-Length")), len(data))
            with self.assertRaises(ValueError):
                json.loads(data)

    def test_fault_mutate(self):
        # every mutation, scripted one request at a time: a 200 answer whose body is not
        # the answer it was (or not even valid UTF-8), with a consistent length
        k = "/fapi/v1/klines?symbol=BTCUSDT&interval=1m&startTime=1704067200000&limit=100"
        original = self.req(k)[2]
        before = self.control("/_fake/stats")["mutations"]
        for i in range(60):
            self.control("/_fake/faults", {"script": ["mutate"], "seed": i})
            c, r = self.raw_get(k)
            data = r.read()
            c.close()
            self.assertEqual(r.status, 200)
            self.assertEqual(int(r.getheader("Content-Length")), len(data))
            self.assertNotEqual(data, original)
            after = self.control("/_fake/stats")["mutations"]
            self.assertEqual(sum(after.values()) - sum(before.values()), 1)
            before = after
        self.assertEqual({k for k, v in before.items() if v > 0}, set(fb.MUTATIONS))
        self.control("/_fake/faults", {})
        self.assertEqual(self.req(k)[2], original)

    def test_fault_reset(self):
        self.control("/_fake/faults", {"script": ["reset"]})
        with self.assertRaises((ConnectionError, http.client.RemoteDisconnected)):
            self.req(self.K)
        self.assertEqual(self.control("/_fake/stats")["faults"]["reset"], 1)

    def test_fault_5xx_and_429(self):
        self.control("/_fake/faults", {"status_5xx": 1.0})
        seen = set()
        for _ in range(20):
            st, h, data = self.req("/fapi/v1/time")
            seen.add(st)
            if st != 502:
                self.assertIn(json.loads(data)["code"], (-1000, -1001))
        self.assertTrue(seen <= {500, 502, 503} and len(seen) >= 2, seen)
        self.control("/_fake/faults", {"status_429": 1.0})
        for _ in range(8):  # more than ban_after: injected 429s never lead to a ban
            st, h, data = self.req("/fapi/v1/time")
            self.assertEqual((st, h["retry-after"], json.loads(data)["code"]), (429, "1", -1003))
        stats = self.control("/_fake/stats")
        self.assertEqual((stats["injected_429"], stats["rate_limited_429"], stats["banned_418"]), (8, 0, 0))

    def test_fault_slow_and_stall(self):
        self.control("/_fake/faults", {"slow": 1.0, "slow_ms": 300})
        t = time.time()
        st, _, _ = self.req("/fapi/v1/time")
        self.assertEqual(st, 200)
        self.assertGreaterEqual(time.time() - t, 0.3)
        self.control("/_fake/faults", {"stall": 1.0, "stall_ms": 400})
        t = time.time()
        c, r = self.raw_get(self.K)
        t_head = time.time() - t
        data = r.read()
        t_body = time.time() - t
        c.close()
        self.assertLess(t_head, 0.3)
        self.assertGreaterEqual(t_body, 0.4)
        self.assertEqual(len(json.loads(data)), 100)

    def test_faults_seeded_paths_and_control(self):
        f = {"status_5xx": 0.3, "garbage": 0.2, "seed": 42, "paths": ["/fapi/v1/klines"]}
        seqs = []
        for _ in range(2):
            self.control("/_fake/faults", f)
            seqs.append([self.req(self.K)[0] for _ in range(25)])
        self.assertEqual(seqs[0], seqs[1])
        self.assertTrue(set(seqs[0]) - {200})
        for _ in range(10):
            self.assertEqual(self.req("/fapi/v1/time")[0], 200)  # path not selected
        self.assertEqual(self.control("/_fake/faults"), f)
        st, _, _ = self.req("/_fake/faults", "POST", {"bogus": 1})
        self.assertEqual(st, 400)
        self.control("/_fake/faults", {})
        stats = self.control("/_fake/stats")
        for k in ("requests", "klines_rows", "weight_total", "responses_by_status", "rate_limited_429",
                  "injected_429", "banned_418", "faults"):
            self.assertIn(k, stats)
        self.assertEqual(stats["requests"]["/fapi/v1/klines"], 50)
        self.assertGreater(stats["klines_rows"], 0)

    # ---- /fapi/v1/ticker/24hr ---------------------------------------------------------------
    TICKER_KEYS = ["symbol", "priceChange", "priceChangePercent", "weightedAvgPrice", "lastPrice", "lastQty",
                   "openPrice", "highPrice", "lowPrice", "volume", "quoteVolume", "openTime", "closeTime",
                   "firstId", "lastId", "count"]

    def check_ticker(self, t, now):
        self.assertEqual(list(t), self.TICKER_KEYS)
        for k in self.TICKER_KEYS[1:11]:
            self.assertIsInstance(t[k], str, k)
            float(t[k])
        for k in self.TICKER_KEYS[11:]:
            self.assertIsInstance(t[k], int, k)
        S = self.symbol(t["symbol"])
        for k in ("weightedAvgPrice", "lastPrice", "openPrice", "highPrice", "lowPrice", "priceChange"):
            self.assertEqual(len(t[k].split(".")[1]) if "." in t[k] else 0, S.pp, (k, t[k]))
        self.assertTrue(float(t["lowPrice"]) <= float(t["weightedAvgPrice"]) <= float(t["highPrice"]), t)
        self.assertTrue(float(t["lowPrice"]) <= float(t["lastPrice"]) <= float(t["highPrice"]), t)
        self.assertAlmostEqual(float(t["priceChange"]), float(t["lastPrice"]) - float(t["openPrice"]), places=6)
        self.assertLessEqual(t["closeTime"], now + 5000)
        self.assertEqual(t["openTime"] % MIN, 0)
        self.assertTrue(DAY <= t["closeTime"] - t["openTime"] < DAY + MIN)
        self.assertEqual(t["lastId"] - t["firstId"] + 1, t["count"])

    def ticker_cli(self, *extra):
        return dict(ln.split(",") for ln in run_cli("ticker", *extra).splitlines())

    def test_ticker_shapes_weights_errors(self):
        self.avoid_minute_edge(2)
        now = self.server_time()
        st, h, t = self.get_json("/fapi/v1/ticker/24hr?symbol=BTCUSDT")
        self.assertEqual(st, 200)
        self.assertIsInstance(t, dict)
        self.check_ticker(t, now)
        self.assertEqual(h["x-mbx-used-weight-1m"], "2")  # 1 (time) + 1
        st, h, arr = self.get_json("/fapi/v1/ticker/24hr")
        self.assertEqual(st, 200)
        self.assertEqual(h["x-mbx-used-weight-1m"], "42")  # + 40
        self.assertIsInstance(arr, list)
        # TRADING perpetuals and delivery contracts; the SETTLING symbol is not listed
        self.assertEqual([x["symbol"] for x in arr], ["BTCUSDT", "ETHUSDT", "NEWUSDT", "DOGEUSDT", "BTCUSDT_261225"])
        for x in arr:
            self.check_ticker(x, now)
        self.assertEqual(arr[0]["quoteVolume"], t["quoteVolume"])
        for qs in ("symbol=FOOUSDT", "symbol=btcusdt", "symbol=OLDUSDT"):
            st, h, body = self.get_json("/fapi/v1/ticker/24hr?" + qs)
            self.assertEqual((st, body), (400, {"code": -1121, "msg": "Invalid symbol."}), qs)
        st, _, body = self.get_json("/fapi/v1/ticker/24hr?symbol=BTCUSDT&symbol=ETHUSDT")
        self.assertEqual(body["code"], -1101)
        self.assertEqual(self.control("/_fake/stats")["weight_total"], 1 + 1 + 40 + 1 + 1 + 1 + 1)

    def test_ticker_board_epoch_and_pins(self):
        def served():
            return {x["symbol"]: x["quoteVolume"] for x in self.get_json("/fapi/v1/ticker/24hr")[2]}

        def ranking(qv):
            return [k for k, _ in sorted(qv.items(), key=lambda kv: (-float(kv[1]), kv[0]))]
        self.assertEqual(served(), self.ticker_cli())
        self.assertEqual(served(), served())  # stable within an epoch
        rankings = {}
        for epoch in (0, 1, 2, 3):
            truth = self.ticker_cli("--board-epoch", str(epoch))
            self.control("/_fake/config", {"board_epoch": epoch})
            self.assertEqual(served(), truth, epoch)
            for v in truth.values():
                self.assertRegex(v, r"^[0-9]+\.[0-9]{2}$")
            rankings[epoch] = ranking(truth)
        self.assertGreater(len({tuple(r) for r in rankings.values()}), 1, rankings)
        # back to epoch 0 gives the same board again
        self.control("/_fake/config", {"board_epoch": 0})
        self.assertEqual(served(), self.ticker_cli())
        # pinned values win over the epoch, and are served verbatim
        cfg = self.control("/_fake/config", {"quote_volumes": {"NEWUSDT": "99999999999.99", "ETHUSDT": "1.5"}})
        self.assertEqual(cfg["quote_volumes"], {"NEWUSDT": "99999999999.99", "ETHUSDT": "1.5"})
        qv = served()
        self.assertEqual((qv["NEWUSDT"], qv["ETHUSDT"]), ("99999999999.99", "1.5"))
        self.assertEqual(ranking(qv)[0], "NEWUSDT")
        self.assertEqual(ranking(qv)[-1], "ETHUSDT")
        self.assertEqual(self.get_json("/fapi/v1/ticker/24hr?symbol=NEWUSDT")[2]["quoteVolume"], "99999999999.99")
        self.control("/_fake/config", {"board_epoch": 2})
        self.assertEqual(served()["NEWUSDT"], "99999999999.99")
        for bad in ({"quote_volumes": {"FOOUSDT": "1"}}, {"quote_volumes": {"BTCUSDT": 5}},
                    {"quote_volumes": {"BTCUSDT": "-1"}}, {"board_epoch": 1.5}, {"quote_volumes": []}):
            self.assertEqual(self.req("/_fake/config", "POST", bad)[0], 400, bad)
        self.control("/_fake/config", {"quote_volumes": {}})
        self.assertEqual(served(), self.ticker_cli("--board-epoch", "2"))
        # synthetic boards
        a = self.ticker_cli("--synthetic", "30")
        b = self.ticker_cli("--synthetic", "30", "--board-epoch", "7")
        self.assertEqual(len(a), 35)
        self.assertNotEqual(ranking(a), ranking(b))

    # ---- /fapi/v1/fundingRate ---------------------------------------------------------------
    def funding(self, expect=200, **params):
        q = "&".join("%s=%s" % kv for kv in params.items())
        st, h, body = self.get_json("/fapi/v1/fundingRate?" + q)
        self.assertEqual(st, expect, body)
        return body, h

    def funding_truth(self, sym, start, end, now=None):
        args = ["funding", sym, str(start), str(end)]
        if now is not None:
            args += ["--now", str(now)]
        return [ln.split(",") for ln in run_cli(*args).splitlines()]

    def test_funding_shape_truth_and_paging(self):
        now = self.server_time()
        rows, h = self.funding(symbol="BTCUSDT", limit=3)
        self.assertEqual(h["x-mbx-used-weight-1m"], "1")  # only /fapi/v1/time counted: weight 0
        for r in rows:
            self.assertEqual(list(r), ["symbol", "fundingTime", "fundingRate", "markPrice"])
            self.assertIsInstance(r["fundingTime"], int)
            self.assertRegex(r["fundingRate"], r"^-?[0-9]\.[0-9]{8}$")
            self.assertRegex(r["markPrice"], r"^[0-9]+\.[0-9]{8}$")
            self.assertTrue(0 <= r["fundingTime"] % (8 * HOUR) <= 30, r)
            self.assertLessEqual(r["fundingTime"], now + 1000)
        # paging forward over two years with limit 1000 == the truth CLI, value for value
        start, end = fb.days_from_civil(2023, 6, 1) * DAY, fb.days_from_civil(2025, 6, 1) * DAY
        got, st = [], start
        while True:
            page, _ = self.funding(symbol="ETHUSDT", startTime=st, endTime=end, limit=1000)
            got += page
            if len(page) < 1000:
                break
            st = page[-1]["fundingTime"] + 1
        truth = self.funding_truth("ETHUSDT", start, end)
        self.assertEqual(len(got), len(truth))
        self.assertGreater(len(truth), 1000)
        for r, t in zip(got, truth):
            self.assertEqual([r["symbol"], str(r["fundingTime"]), r["fundingRate"], r["markPrice"]], t)
        # markPrice is "" on rows before 2023-11-01 (as in live history), present after
        old = [r for r in got if r["fundingTime"] < fb.MARK_PRICE_SINCE]
        self.assertTrue(old and all(r["markPrice"] == "" for r in old))
        self.assertTrue(all(r["markPrice"] for r in got if r["fundingTime"] >= fb.MARK_PRICE_SINCE))
        # startTime/endTime both inclusive on the served fundingTime (jitter included)
        ft = [r["fundingTime"] for r in got[10:16]]
        rows, _ = self.funding(symbol="ETHUSDT", startTime=ft[0], endTime=ft[5])
        self.assertEqual([r["fundingTime"] for r in rows], ft)
        rows, _ = self.funding(symbol="ETHUSDT", startTime=ft[0] + 1, endTime=ft[5] - 1)
        self.assertEqual([r["fundingTime"] for r in rows], ft[1:5])
        # more rows than limit between start and end: `limit` rows counting from startTime
        rows, _ = self.funding(symbol="ETHUSDT", startTime=ft[0], endTime=end, limit=4)
        self.assertEqual([r["fundingTime"] for r in rows], ft[:4])
        # only endTime: the `limit` rows up to it
        rows, _ = self.funding(symbol="ETHUSDT", endTime=ft[5], limit=3)
        self.assertEqual([r["fundingTime"] for r in rows], ft[3:6])
        # neither: the most recent `limit` (default 100), at most 500 whatever limit says
        recent, _ = self.funding(symbol="BTCUSDT")
        self.assertEqual(len(recent), 100)
        self.assertGreater(recent[-1]["fundingTime"], now - 8 * HOUR - 1000)
        big, _ = self.funding(symbol="BTCUSDT", limit=1000)
        self.assertEqual(len(big), 500)
        self.assertEqual(big[-100:], recent)
        t2 = self.funding_truth("BTCUSDT", big[0]["fundingTime"], now, now=now)
        self.assertEqual([int(t[1]) for t in t2[:500]], [r["fundingTime"] for r in big])
        # no symbol: every perpetual, ascending, same jitter for every symbol at one boundary
        allrows, _ = self.funding(startTime=fb.days_from_civil(2026, 1, 1) * DAY, limit=40)
        self.assertEqual(len(allrows), 40)
        self.assertEqual(allrows, sorted(allrows, key=lambda r: (r["fundingTime"], r["symbol"])))
        by_b = {}
        for r in allrows:
            by_b.setdefault(r["fundingTime"] - r["fundingTime"] % HOUR, set()).add(r["fundingTime"])
        self.assertTrue(all(len(v) == 1 for v in by_b.values()), by_b)
        self.assertTrue({"BTCUSDT", "ETHUSDT", "OLDUSDT"} <= {r["symbol"] for r in allrows})
        # delivery contracts have no funding
        self.assertEqual(self.funding(symbol="BTCUSDT_261225")[0], [])

    def test_funding_intervals_listing_delisting(self):
        now = self.server_time()
        day = (now - 3 * DAY) // DAY * DAY

        def per_day(sym, d):
            return len(self.funding(symbol=sym, startTime=d, endTime=d + DAY - 1)[0])
        self.assertEqual(per_day("BTCUSDT", day), 3)
        self.assertEqual(per_day("ETHUSDT", day), 6)  # 4 h
        self.assertEqual(per_day("NEWUSDT", day), 6)  # 4 h from listing
        self.assertEqual(per_day("ETHUSDT", fb.days_from_civil(2024, 12, 30) * DAY), 3)  # 8 h before the switch
        switch = self.funding(symbol="ETHUSDT", startTime=fb.ETH_FUNDING_4H_SINCE - DAY, limit=8)[0]
        gaps = [(b["fundingTime"] - b["fundingTime"] % HOUR) - (a["fundingTime"] - a["fundingTime"] % HOUR)
                for a, b in zip(switch, switch[1:])]
        self.assertEqual(gaps, [8 * HOUR] * 3 + [4 * HOUR] * 4)
        hours = {r["fundingTime"] // HOUR % 24 for r in self.funding(symbol="BTCUSDT", limit=30)[0]}
        self.assertEqual(hours, {0, 8, 16})
        # nothing before onboardDate
        S = self.symbol("NEWUSDT")
        rows = self.funding(symbol="NEWUSDT", startTime=0, limit=5)[0]
        self.assertEqual(rows[0]["fundingTime"] - rows[0]["fundingTime"] % HOUR, S.onboard + 4 * HOUR)
        self.assertEqual(self.funding(symbol="NEWUSDT", endTime=S.onboard)[0], [])
        self.assertEqual(self.funding_truth("NEWUSDT", 0, S.onboard), [])
        rows = self.funding(symbol="BTCUSDT", startTime=0, limit=1)[0]
        self.assertGreater(rows[0]["fundingTime"], self.symbol("BTCUSDT").onboard)
        # delisted: history up to the delisting, nothing after
        old = self.symbol("OLDUSDT")
        rows = self.funding(symbol="OLDUSDT")[0]
        self.assertLess(rows[-1]["fundingTime"], old.end_ms)
        self.assertGreater(rows[-1]["fundingTime"], old.end_ms - 8 * HOUR)
        # synthetic rule: every fourth synthetic symbol (index % 4 == 1) funds every 4 h
        d = fb.days_from_civil(2026, 3, 1) * DAY
        for sym, n in (("S0000USDT", 3), ("S0001USDT", 6), ("S0005USDT", 6)):
            out = run_cli("funding", sym, str(d), str(d + DAY - 1), "--synthetic", "8")
            self.assertEqual(len(out.splitlines()), n, sym)

    def test_funding_errors(self):
        cases = (
            ("symbol=FOOUSDT", -1121, "Invalid symbol."),
            ("symbol=btcusdt", -1121, "Invalid symbol."),
            ("symbol=BTCUSDT&limit=1001", -1130, "Data sent for parameter 'limit' is not valid."),
            ("symbol=BTCUSDT&limit=0", -1130, "Data sent for parameter 'limit' is not valid."),
            ("symbol=BTCUSDT&startTime=10&endTime=9", -1023, "Start time is greater than end time."),
            ("symbol=BTCUSDT&startTime=abc", -1100,
             "Illegal characters found in parameter 'startTime'; legal range is '^[0-9]{1,20}$'."),
            ("symbol=BTCUSDT&symbol=ETHUSDT", -1101, "Duplicate values for a parameter detected."),
        )
        for qs, code, msg in cases:
            st, h, body = self.get_json("/fapi/v1/fundingRate?" + qs)
            self.assertEqual((st, body), (400, {"code": code, "msg": msg}), qs)
            self.assertIn("x-mbx-used-weight-1m", h)
        self.assertEqual(self.funding(symbol="BTCUSDT", limit=1000, startTime=0)[0][0]["symbol"], "BTCUSDT")

    @staticmethod
    def avoid_5min_edge(margin=2.0):
        s = time.time() % 300
        if s > 300 - margin:
            time.sleep(300 - s + 0.05)

    def test_endpoint_request_limits(self):
        self.avoid_5min_edge(3)
        self.control("/_fake/config", {"funding_limit": 4, "oi_limit": 3, "ban_after": 3, "ban_seconds": 1})
        self.control("/_fake/reset", {})
        for i in range(4):
            self.funding(symbol="BTCUSDT", limit=1)
        st, h, body = self.get_json("/fapi/v1/fundingRate?symbol=BTCUSDT&limit=1")
        self.assertEqual(st, 429)
        self.assertEqual(body, {"code": -1003, "msg": "Too many requests; current limit of IP(127.0.0.1) is 4 "
                                "requests per 5 minutes. Please use the websocket for live updates to avoid polling the API."})
        self.assertTrue(1 <= int(h["retry-after"]) <= 300)
        self.assertIn("x-mbx-used-weight-1m", h)
        # the weight budget and the other limit are separate
        self.assertEqual(self.req("/fapi/v1/time")[0], 200)
        for i in range(3):
            self.assertEqual(self.req("/futures/data/openInterestHist?symbol=BTCUSDT&period=1h")[0], 200)
        st, h, body = self.get_json("/futures/data/openInterestHist?symbol=BTCUSDT&period=1h")
        self.assertEqual(st, 429)
        self.assertEqual(body["code"], -1003)
        self.assertIn("is 3 requests per 5 minutes", body["msg"])
        stats = self.control("/_fake/stats")
        self.assertEqual(stats["endpoint_limited_429"], {"funding": 1, "oi": 1})
        self.assertEqual(stats["endpoint_window_requests"], {"funding": 5, "oi": 4})
        self.assertEqual(stats["rate_limited_429"], 0)
        self.assertEqual(stats["weight_total"], 1)  # fundingRate and openInterestHist weigh 0
        # hammering on after 429s ends in a 418 ban, like the weight limit
        st, _, _ = self.get_json("/fapi/v1/fundingRate?symbol=BTCUSDT")
        self.assertEqual(st, 429)
        st, h, body = self.get_json("/fapi/v1/fundingRate?symbol=BTCUSDT")
        self.assertEqual(st, 418)
        self.assertTrue(body["msg"].startswith("Way too many requests; IP(127.0.0.1) banned until "))
        time.sleep(1.1)
        self.control("/_fake/config", {"funding_limit": 500, "oi_limit": 1000})
        self.assertEqual(self.req("/fapi/v1/fundingRate?symbol=BTCUSDT&limit=1")[0], 200)

    def test_rate_limits_per_ip(self):
        A, B, C = "127.0.0.2", "127.0.0.3", "127.0.0.4"
        self.avoid_minute_edge(5)  # the 5-minute endpoint windows too
        self.control("/_fake/config", {"weight_limit": 10, "ban_after": 1, "ban_seconds": 1, "funding_limit": 2})
        self.control("/_fake/reset", {})
        # A uses up its weight: 10 requests of weight 1 on two symbols, then 429
        for i in range(10):
            sym, n = ("BTCUSDT", 7) if i < 6 else ("ETHUSDT", 3)
            st, h, rows = self.get_from(A, "/fapi/v1/klines?symbol=%s&interval=1m&limit=%d" % (sym, n))
            self.assertEqual((st, len(rows), h["x-mbx-used-weight-1m"]), (200, n, str(i + 1)))
        st, h, body = self.get_from(A, "/fapi/v1/klines?symbol=BTCUSDT&interval=1m&limit=1")
        self.assertEqual((st, h["x-mbx-used-weight-1m"]), (429, "11"))
        self.assertEqual(body["msg"], "Too many requests; current limit of IP(127.0.0.2) is 10 requests per minute. "
                                      "Please use the websocket for live updates to avoid polling the API.")
        # B has its own budget and its own header
        st, h, rows = self.get_from(B, "/fapi/v1/klines?symbol=ETHUSDT&interval=1m&limit=5")
        self.assertEqual((st, len(rows), h["x-mbx-used-weight-1m"]), (200, 5, "1"))
        st, h, _ = self.get_from(B, "/fapi/v1/time")
        self.assertEqual((st, h["x-mbx-used-weight-1m"]), (200, "2"))
        # A is banned; B is not
        st, h, body = self.get_from(A, "/fapi/v1/time")
        self.assertEqual((st, h["x-mbx-used-weight-1m"]), (418, "12"))
        self.assertTrue(body["msg"].startswith("Way too many requests; IP(127.0.0.2) banned until "))
        until = int(body["msg"].split("until ")[1][:13])
        self.assertEqual(self.get_from(A, "/fapi/v1/fundingRate?symbol=BTCUSDT&limit=1")[0], 418)
        st, h, rows = self.get_from(B, "/fapi/v1/klines?symbol=BTCUSDT&interval=1m&limit=2")
        self.assertEqual((st, len(rows), h["x-mbx-used-weight-1m"]), (200, 2, "3"))
        # the endpoint windows are per IP too: B's third fundingRate is refused, C's first is not
        self.assertEqual([self.get_from(B, "/fapi/v1/fundingRate?symbol=BTCUSDT&limit=1")[0] for _ in range(3)],
                         [200, 200, 429])
        self.assertEqual(self.get_from(C, "/fapi/v1/fundingRate?symbol=BTCUSDT&limit=1")[0], 200)
        stats = self.control("/_fake/stats")
        by = stats["by_ip"]
        self.assertLessEqual({A, B, C}, set(by))
        self.assertEqual(by[A], {"weight_total": 12, "weight_current_minute": 12, "banned_until": until,
                                 "rate_limited_429": 1, "requests": 13, "klines_rows": 54,
                                 "klines_symbols": {"BTCUSDT": 42, "ETHUSDT": 12}, "ws_streams": []})
        self.assertEqual(by[B], {"weight_total": 3, "weight_current_minute": 3, "banned_until": 0,
                                 "rate_limited_429": 0, "requests": 6, "klines_rows": 7,
                                 "klines_symbols": {"ETHUSDT": 5, "BTCUSDT": 2}, "ws_streams": []})
        self.assertEqual((by[C]["requests"], by[C]["weight_total"], by[C]["klines_symbols"]), (1, 0, {}))
        # the old keys: sums and the latest ban over the IPs
        self.assertEqual(stats["weight_current_minute"], 15)
        self.assertEqual(stats["weight_total"], 15)
        self.assertEqual(stats["klines_rows"], 61)
        self.assertEqual(stats["banned_until"], until)
        self.assertEqual((stats["rate_limited_429"], stats["banned_418"]), (1, 2))
        self.assertEqual(stats["endpoint_window_requests"], {"funding": 5, "oi": 0})
        self.assertEqual(stats["endpoint_limited_429"], {"funding": 1, "oi": 0})
        # reset clears every IP's windows and bans
        self.control("/_fake/reset", {})
        self.assertNotIn(A, self.control("/_fake/stats")["by_ip"])
        st, h, _ = self.get_from(A, "/fapi/v1/time")
        self.assertEqual((st, h["x-mbx-used-weight-1m"]), (200, "1"))
        self.assertEqual(self.get_from(B, "/fapi/v1/fundingRate?symbol=BTCUSDT&limit=1")[0], 200)

    # ---- /futures/data/openInterestHist -----------------------------------------------------
    def oi(self, expect=200, **params):
        q = "&".join("%s=%s" % kv for kv in params.items())
        st, h, body = self.get_json("/futures/data/openInterestHist?" + q)
        self.assertEqual(st, expect, body)
        return body, h

    def test_oi_shape_window_and_truth(self):
        now = self.server_time()
        rows, h = self.oi(symbol="BTCUSDT", period="5m")
        self.assertEqual(len(rows), 30)  # default limit
        self.assertEqual(h["x-mbx-used-weight-1m"], "1")  # weight 0
        for r in rows:
            self.assertEqual(list(r), ["symbol", "sumOpenInterest", "sumOpenInterestValue",
                                       "CMCCirculatingSupply", "timestamp"])
            self.assertIsInstance(r["timestamp"], int)
            for k in ("sumOpenInterest", "sumOpenInterestValue", "CMCCirculatingSupply"):
                self.assertIsInstance(r[k], str)
                self.assertGreater(float(r[k]), 0)
            self.assertRegex(r["sumOpenInterest"], r"^[0-9]+\.[0-9]{8}$")
            self.assertRegex(r["sumOpenInterestValue"], r"^[0-9]+\.[0-9]{8}$")
            self.assertEqual(r["timestamp"] % (5 * MIN), 0)
        self.assertEqual([r["timestamp"] for r in rows], list(range(rows[0]["timestamp"], rows[-1]["timestamp"] + 1, 5 * MIN)))
        self.assertLessEqual(rows[-1]["timestamp"], now + 1000)
        self.assertGreater(rows[-1]["timestamp"], now - 5 * MIN - 1000)
        # only the latest 30 days exist: 4h x 500 gives 30 days' worth, 1d every day of the window
        p4 = 4 * HOUR
        rows4, _ = self.oi(symbol="BTCUSDT", period="4h", limit=500)
        lo = -(-(now - 30 * DAY) // p4) * p4
        self.assertIn(len(rows4), (180, 181))
        self.assertTrue(rows4[0]["timestamp"] >= lo - p4 and rows4[0]["timestamp"] >= now - 30 * DAY - 1000)
        self.assertEqual(self.oi(symbol="BTCUSDT", period="1d", limit=500)[0][0]["timestamp"] % DAY, 0)
        # the same instant shows the same snapshot in every period that has it
        by_t4 = {r["timestamp"]: r for r in rows4}
        for r in self.oi(symbol="BTCUSDT", period="1h", limit=100)[0]:
            if r["timestamp"] in by_t4:
                self.assertEqual(r, by_t4[r["timestamp"]])
        # startTime within the window is served from there; older is refused with -1130
        st_ok = now - 30 * DAY + MIN
        rows, _ = self.oi(symbol="BTCUSDT", period="1h", startTime=st_ok, limit=5)
        self.assertEqual(rows[0]["timestamp"], -(-st_ok // HOUR) * HOUR)
        body, h = self.oi(400, symbol="BTCUSDT", period="1h", startTime=now - 31 * DAY)
        self.assertEqual(body, {"msg": "parameter 'startTime' is invalid.", "code": -1130})
        self.assertEqual(self.req("/futures/data/openInterestHist?symbol=BTCUSDT&period=1h&startTime=%d"
                                  % (now - 31 * DAY))[2], b'{"msg":"parameter \'startTime\' is invalid.","code":-1130}')
        self.assertEqual(self.oi(symbol="BTCUSDT", period="1h", endTime=now - 40 * DAY)[0], [])
        # endTime only: the `limit` rows up to it; start+end: `limit` counting from startTime
        e = now - 5 * DAY
        rows, _ = self.oi(symbol="ETHUSDT", period="15m", endTime=e, limit=4)
        self.assertEqual(rows[-1]["timestamp"], e - e % (15 * MIN))
        s0 = now - 12 * DAY
        rows, _ = self.oi(symbol="ETHUSDT", period="15m", startTime=s0, endTime=e, limit=500)
        self.assertEqual(len(rows), 500)
        self.assertEqual(rows[0]["timestamp"], -(-s0 // (15 * MIN)) * 15 * MIN)
        # truth CLI == endpoint, and covers exactly what can be served now
        truth = [ln.split(",") for ln in run_cli("oi", "ETHUSDT", "15m", str(s0), str(e), "--now", str(now)).splitlines()]
        self.assertEqual([[r["symbol"], str(r["timestamp"]), r["sumOpenInterest"], r["sumOpenInterestValue"]]
                          for r in rows], truth[:500])
        full = run_cli("oi", "BTCUSDT", "1h", "0", str(now), "--now", str(now)).splitlines()
        self.assertIn(len(full), (720, 721))
        self.assertGreaterEqual(int(full[0].split(",")[1]), now - 30 * DAY)
        # listing: NEWUSDT (10 days old) has rows from its onboardDate only
        S = self.symbol("NEWUSDT")
        rows, _ = self.oi(symbol="NEWUSDT", period="1d", limit=500)
        self.assertEqual(rows[0]["timestamp"], S.onboard)
        self.assertEqual(len(rows), 11)

    def test_oi_errors_and_switches(self):
        cases = (
            ("period=5m", -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."),
            ("symbol=BTCUSDT", -1102, "Mandatory parameter 'period' was not sent, was empty/null, or malformed."),
            ("symbol=FOOUSDT&period=5m", -1121, "Invalid symbol."),
            ("symbol=BTCUSDT&period=1m", -1130, "parameter 'period' is invalid."),
            ("symbol=BTCUSDT&period=8h", -1130, "parameter 'period' is invalid."),
            ("symbol=BTCUSDT&period=5m&limit=501", -1130, "parameter 'limit' is invalid."),
            ("symbol=BTCUSDT&period=5m&limit=0", -1130, "parameter 'limit' is invalid."),
            ("symbol=BTCUSDT&period=5m&startTime=x", -1100,
             "Illegal characters found in parameter 'startTime'; legal range is '^[0-9]{1,20}$'."),
        )
        for qs, code, msg in cases:
            st, h, data = self.req("/futures/data/openInterestHist?" + qs)
            self.assertEqual(st, 400, qs)
            self.assertEqual(list(json.loads(data).items()), [("msg", msg), ("code", code)], qs)
        self.assertEqual(len(self.oi(symbol="BTCUSDT", period="5m", limit=500)[0]), 500)
        self.control("/_fake/config", {"oi_timestamp_as_string": 1, "oi_weight_header": 0})
        rows, h = self.oi(symbol="BTCUSDT", period="1h", limit=2)
        self.assertIsInstance(rows[0]["timestamp"], str)
        self.assertNotIn("x-mbx-used-weight-1m", h)
        self.assertIn("x-mbx-used-weight-1m", self.req("/fapi/v1/time")[1])

    # ---- WebSocket --------------------------------------------------------------------------
    def ws_run(self, coro_fn, timeout=15):
        import aiohttp

        async def main():
            async with aiohttp.ClientSession() as s:
                return await coro_fn(s, "http://127.0.0.1:%d" % self.port)
        return asyncio.run(asyncio.wait_for(main(), timeout))

    def test_ws_combined_and_control_messages(self):
        async def go(s, base):
            out = {}
            async with s.ws_connect(base + "/market/stream?streams=btcusdt@kline_1m/ethusdt@kline_1h") as ws:
                for m in ({"method": "SUBSCRIBE", "params": ["newusdt@kline_5m"], "id": 1},
                          {"method": "UNSUBSCRIBE", "params": ["ethusdt@kline_1h"], "id": 2},
                          {"method": "LIST_SUBSCRIPTIONS", "id": 3},
                          {"method": "GET_PROPERTY", "params": ["combined"], "id": 4},
                          {"method": "SET_PROPERTY", "params": ["combined", "yes"], "id": 5},
                          {"method": "SET_PROPERTY", "params": ["nope", True], "id": 6},
                          {"method": "FOO", "id": 7},
                          {"method": "SUBSCRIBE", "params": [], "id": "x"}):
                    await ws.send_str(json.dumps(m))
                await ws.send_str("{nope")
                replies, frames = [], []
                t = time.time()
                while time.time() - t < 1.2:
                    d = json.loads((await ws.receive(timeout=2)).data)
                    (frames if "stream" in d else replies).append(d)
                out["replies"], out["frames"] = replies, frames
                # REST forming row right after the last frame
                async with s.get(base + "/fapi/v1/klines?symbol=BTCUSDT&interval=1m&limit=1") as r:
                    out["rest"] = (await r.json())[0]
            return out
        out = self.ws_run(go)
        r = out["replies"]
        self.assertEqual(r[0], {"result": None, "id": 1})
        self.assertEqual(r[1], {"result": None, "id": 2})
        self.assertEqual(r[2], {"result": ["btcusdt@kline_1m", "newusdt@kline_5m"], "id": 3})
        self.assertEqual(r[3], {"result": True, "id": 4})
        self.assertEqual(r[4], {"code": 1, "msg": "Invalid value type: expected Boolean"})
        self.assertEqual(r[5], {"code": 0, "msg": "Unknown property", "id": 6})
        self.assertEqual(r[6]["code"], 2)
        self.assertIn("unknown variant", r[6]["msg"])
        self.assertEqual(r[7], {"code": 2, "msg": "Invalid request: request ID must be an unsigned integer"})
        self.assertEqual(r[8]["code"], 3)
        streams = {f["stream"] for f in out["frames"]}
        self.assertTrue({"btcusdt@kline_1m", "newusdt@kline_5m"} <= streams)
        btc = [f["data"] for f in out["frames"] if f["stream"] == "btcusdt@kline_1m"]
        self.assertGreaterEqual(len(btc), 3)
        d = btc[-1]
        self.assertEqual((d["e"], d["s"], d["k"]["s"], d["k"]["i"], d["k"]["B"]), ("kline", "BTCUSDT", "BTCUSDT", "1m", "0"))
        self.assertEqual(set(d["k"]), set("tTsifLochlvnxqVQB"))
        rest = out["rest"]
        if rest[0] == d["k"]["t"] and not d["k"]["x"]:
            self.assertEqual(rest[1], d["k"]["o"])
            self.assertGreaterEqual(float(rest[5]), float(d["k"]["v"]))  # REST asked later: more volume
            self.assertGreaterEqual(float(rest[2]), float(d["k"]["h"]))
            self.assertLessEqual(float(d["k"]["h"]), float(fb.row_json(self.symbol("BTCUSDT"), fb.gen_candle(
                self.symbol("BTCUSDT"), "1m", rest[0])).split(",")[2].strip('"')))

    def test_ws_subscribed_just_before_close(self):
        # pushes every 2 s; subscribed about 1 s before a close, before the
        # stream's first push: the closing event still comes, as on Binance
        self.control("/_fake/config", {"ws_interval_ms": 2000})
        got = {}

        async def go(s, base):
            async with s.ws_connect(base + "/market/stream") as ws:
                now = int(time.time() * 1000)
                got["nxt"] = nxt = (now // MIN + 1) * MIN
                async with s.post(base + "/_fake/config", json={"clock_offset_ms": nxt - now - 1000}) as r:
                    self.assertEqual(r.status, 200)
                await ws.send_str(json.dumps({"method": "SUBSCRIBE", "params": ["ethusdt@kline_1m"], "id": 1}))
                frames = []
                t = time.time()
                while time.time() - t < 3.0:
                    try:
                        frames.append(json.loads((await ws.receive(timeout=3)).data))
                    except asyncio.TimeoutError:
                        break
            return frames
        try:
            frames = self.ws_run(go)
        finally:
            self.control("/_fake/config", {"clock_offset_ms": 0, "ws_interval_ms": 250})
        nxt = got["nxt"]
        klines = [f["data"]["k"] for f in frames if "stream" in f]
        self.assertIn((nxt - MIN, True), [(k["t"], k["x"]) for k in klines])
        self.assertIn((nxt, False), [(k["t"], k["x"]) for k in klines])

    def test_ws_subscribe_delay(self):
        # a SUBSCRIBE taken 500 ms over, sent 200 ms before a close, misses it
        now = int(time.time() * 1000)
        nxt = (now // MIN + 1) * MIN
        self.control("/_fake/config", {"clock_offset_ms": nxt - now - 200, "ws_subscribe_delay_ms": 500})

        async def go(s, base):
            async with s.ws_connect(base + "/market/stream") as ws:
                t = time.time()
                await ws.send_str(json.dumps({"method": "SUBSCRIBE", "params": ["ethusdt@kline_1m"], "id": 7}))
                frames = []
                reply_after = None
                while time.time() - t < 1.3:
                    try:
                        f = json.loads((await ws.receive(timeout=1)).data)
                    except asyncio.TimeoutError:
                        break
                    if f.get("id") == 7:
                        reply_after = time.time() - t
                    frames.append(f)
            return frames, reply_after
        try:
            frames, reply_after = self.ws_run(go)
        finally:
            self.control("/_fake/config", {"clock_offset_ms": 0, "ws_subscribe_delay_ms": 0})
        self.assertIsNotNone(reply_after)
        self.assertGreaterEqual(reply_after, 0.45)
        seen = [(f["data"]["k"]["t"], f["data"]["k"]["x"]) for f in frames if "stream" in f]
        self.assertIn((nxt, False), seen)
        self.assertNotIn((nxt - MIN, True), seen)

    def test_ws_close_frame_and_raw_routes(self):
        now = int(time.time() * 1000)
        nxt = (now // MIN + 1) * MIN
        self.control("/_fake/config", {"clock_offset_ms": nxt - now - 600})  # a 1m candle closes in ~0.6 s

        async def go(s, base):
            got = {}
            async with s.ws_connect(base + "/market/ws/btcusdt@kline_1m") as ws, \
                    s.ws_connect(base + "/ws/btcusdt@kline_1m") as legacy, \
                    s.ws_connect(base + "/stream?streams=btcusdt@kline_1m") as legacy2:
                frames = []
                t = time.time()
                while time.time() - t < 1.6:
                    frames.append(json.loads((await ws.receive(timeout=2)).data))
                got["frames"] = frames
                for name, w in (("legacy", legacy), ("legacy2", legacy2)):
                    try:
                        m = await w.receive(timeout=0.2)
                        got[name] = m.data
                    except asyncio.TimeoutError:
                        got[name] = None
            return got
        try:
            got = self.ws_run(go)
        finally:
            self.control("/_fake/config", {"clock_offset_ms": 0})
        self.assertIsNone(got["legacy"])
        self.assertIsNone(got["legacy2"])
        frames = got["frames"]
        self.assertNotIn("stream", frames[0])  # raw stream: unwrapped payload
        closed = [f for f in frames if f["k"]["x"]]
        self.assertEqual(len(closed), 1)
        k = closed[0]["k"]
        self.assertEqual(k["t"], nxt - MIN)
        self.assertGreater(closed[0]["E"], k["T"])
        S = self.symbol("BTCUSDT")
        truth = json.loads(fb.row_json(S, fb.gen_candle(S, "1m", k["t"])))
        self.assertEqual([k["o"], k["h"], k["l"], k["c"], k["v"], k["n"], k["q"], k["V"], k["Q"]],
                         [truth[1], truth[2], truth[3], truth[4], truth[5], truth[8], truth[7], truth[9], truth[10]])
        before = [f for f in frames if f["k"]["t"] == k["t"] and not f["k"]["x"]]
        self.assertTrue(before)
        self.assertNotEqual(before[-1]["k"]["v"], k["v"])
        after = [f for f in frames if f["k"]["t"] == nxt]
        self.assertTrue(after)
        self.assertLess(frames.index(closed[0]), frames.index(after[0]))

    def test_ws_limits(self):
        import aiohttp
        self.control("/_fake/config", {"ws_max_streams": 3})

        async def go(s, base):
            res = {}
            async with s.ws_connect(base + "/market/stream") as ws:  # message rate: 15 msgs at once
                for i in range(15):
                    await ws.send_str(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": i}))
                n = 0
                while True:
                    m = await ws.receive(timeout=2)
                    if m.type != aiohttp.WSMsgType.TEXT:
                        break
                    n += 1
                res["rate_replies"] = n
            async with s.ws_connect(base + "/market/stream") as ws:  # stream limit
                await ws.send_str(json.dumps({"method": "SUBSCRIBE", "params": ["a@kline_1m", "b@kline_1m"], "id": 1}))
                await ws.send_str(json.dumps({"method": "SUBSCRIBE", "params": ["c@kline_1m", "d@kline_1m"], "id": 2}))
                msgs = []
                while True:
                    m = await ws.receive(timeout=2)
                    if m.type != aiohttp.WSMsgType.TEXT:
                        break
                    msgs.append(json.loads(m.data))
                res["limit_msgs"] = msgs
            return res
        res = self.ws_run(go)
        self.assertLessEqual(res["rate_replies"], 10)
        self.assertEqual(res["limit_msgs"][0], {"result": None, "id": 1})
        self.assertEqual(len(res["limit_msgs"]), 2)
        stats = self.control("/_fake/stats")["ws"]
        self.assertEqual(stats["rate_drops"], 1)

    def test_ws_streams_by_ip(self):
        import aiohttp

        async def call(ws, method, rid, params=None):
            m = {"method": method, "id": rid}
            if params is not None:
                m["params"] = params
            await ws.send_str(json.dumps(m))
            while True:
                d = json.loads((await ws.receive(timeout=5)).data)
                if d.get("id") == rid:
                    return d

        async def stats(s, base):
            async with s.get(base + "/_fake/stats") as r:
                return (await r.json())["by_ip"]

        async def go(s, base):
            out = {}
            sa = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.0.2", 0)))
            sb = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.0.3", 0)))
            async with sa, sb:
                async with sa.ws_connect(base + "/market/stream?streams=btcusdt@kline_1m") as wa1, \
                        sa.ws_connect(base + "/market/ws/newusdt@kline_5m/btcusdt@kline_1m") as wa2, \
                        sb.ws_connect(base + "/market/ws") as wb:
                    out["sub_a"] = await call(wa1, "SUBSCRIBE", 1, ["ethusdt@kline_1h"])
                    out["sub_b"] = await call(wb, "SUBSCRIBE", 2, ["dogeusdt@kline_1m"])
                    out["list_a2"] = await call(wa2, "LIST_SUBSCRIPTIONS", 3)
                    async with sb.get(base + "/fapi/v1/klines?symbol=DOGEUSDT&interval=1m&limit=3") as r:
                        out["rest"] = (r.status, len(await r.json()))
                    out["open"] = await stats(s, base)
                out["closed"] = None
                for _ in range(40):  # the server drops a connection a moment after its close
                    by = await stats(s, base)
                    if not any(v["ws_streams"] for v in by.values()):
                        out["closed"] = by
                        break
                    await asyncio.sleep(0.05)
            return out
        out = self.ws_run(go)
        self.assertEqual(out["sub_a"], {"result": None, "id": 1})
        self.assertEqual(out["sub_b"], {"result": None, "id": 2})
        self.assertEqual(out["list_a2"], {"result": ["newusdt@kline_5m", "btcusdt@kline_1m"], "id": 3})
        self.assertEqual(out["rest"], (200, 3))
        by = out["open"]
        self.assertEqual(by["127.0.0.2"]["ws_streams"], ["btcusdt@kline_1m", "ethusdt@kline_1h", "newusdt@kline_5m"])
        self.assertEqual((by["127.0.0.2"]["requests"], by["127.0.0.2"]["klines_symbols"]), (0, {}))
        self.assertEqual(by["127.0.0.3"]["ws_streams"], ["dogeusdt@kline_1m"])
        self.assertEqual((by["127.0.0.3"]["requests"], by["127.0.0.3"]["klines_symbols"]), (1, {"DOGEUSDT": 3}))
        self.assertEqual(by.get("127.0.0.1", {}).get("ws_streams", []), [])
        # closed: a WS-only IP leaves by_ip, one with REST history stays, with no streams
        self.assertIsNotNone(out["closed"])
        self.assertNotIn("127.0.0.2", out["closed"])
        self.assertEqual(out["closed"]["127.0.0.3"]["ws_streams"], [])

    def test_ws_ping_pong_lifetime(self):
        import aiohttp
        self.control("/_fake/config", {"ws_ping_interval": 0.3, "ws_pong_timeout": 0.9, "ws_interval_ms": 50})

        async def go(s, base):
            res = {}
            async with s.ws_connect(base + "/market/ws/btcusdt@kline_1m", autoping=False) as ws:
                t = time.time()
                pings = 0
                while True:
                    m = await ws.receive(timeout=3)
                    if m.type == aiohttp.WSMsgType.PING:
                        pings += 1
                    elif m.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                        break
                res["pings"], res["closed_after"] = pings, time.time() - t
            async with s.ws_connect(base + "/market/ws/btcusdt@kline_1m", autoping=True) as ws:  # answers pings
                t = time.time()
                while time.time() - t < 1.3:
                    m = await ws.receive(timeout=2)
                    self.assertEqual(m.type, aiohttp.WSMsgType.TEXT)
            return res
        res = self.ws_run(go)
        self.assertGreaterEqual(res["pings"], 2)
        self.assertTrue(0.8 <= res["closed_after"] <= 2.0, res)
        self.control("/_fake/config", {"ws_ping_interval": 180, "ws_pong_timeout": 600, "ws_max_lifetime": 0.5})

        async def go2(s, base):
            async with s.ws_connect(base + "/market/ws/btcusdt@kline_1m") as ws:
                t = time.time()
                while True:
                    m = await ws.receive(timeout=3)
                    if m.type != aiohttp.WSMsgType.TEXT:
                        return time.time() - t
        self.assertLess(self.ws_run(go2), 1.5)
        stats = self.control("/_fake/stats")["ws"]
        self.assertEqual((stats["pong_timeouts"], stats["lifetime_closes"]), (1, 1))

    def test_ws_faults(self):
        import aiohttp

        async def collect(s, base, secs):
            frames = []
            async with s.ws_connect(base + "/market/stream?streams=btcusdt@kline_1m") as ws:
                t = time.time()
                while time.time() - t < secs:
                    try:
                        m = await ws.receive(timeout=secs)
                    except asyncio.TimeoutError:
                        break
                    if m.type != aiohttp.WSMsgType.TEXT:
                        frames.append(None)
                        break
                    frames.append(m.data)
            return frames
        self.control("/_fake/config", {"ws_interval_ms": 100})
        self.control("/_fake/faults", {"ws_duplicate": 1.0})
        fr = self.ws_run(lambda s, b: collect(s, b, 0.6))
        self.assertTrue(any(fr[i] == fr[i + 1] for i in range(len(fr) - 1)))
        self.control("/_fake/faults", {"ws_garbage": 1.0})
        fr = self.ws_run(lambda s, b: collect(s, b, 0.6))
        bad = 0
        for f in fr:
            try:
                json.loads(f)
            except (ValueError, TypeError):
                bad += 1
        self.assertGreater(bad, 0)
        self.control("/_fake/faults", {"ws_drop": 1.0})
        fr = self.ws_run(lambda s, b: collect(s, b, 3))
        self.assertIsNone(fr[-1])
        self.control("/_fake/faults", {"ws_stall": 1.0})
        fr = self.ws_run(lambda s, b: collect(s, b, 2.5))
        self.assertTrue(fr and fr[-1] is not None)  # socket stayed open
        self.assertLess(len(fr), 13)  # ~10 frames in the first second, then silence
        stats = self.control("/_fake/stats")["faults"]
        for k in ("ws_duplicate", "ws_garbage", "ws_drop", "ws_stall"):
            self.assertGreater(stats[k], 0, k)

    def test_ws_maintenance_window(self):
        # server clock 1.4 s before 03:00 UTC: the 02:59 candle closes, nothing forms in the
        # window (1m, 5m, 1h), the 1d candle goes on, BTCUSDT is unaffected
        now = int(time.time() * 1000)
        w0 = now // DAY * DAY + 3 * HOUR
        self.control("/_fake/config", {"clock_offset_ms": w0 - now - 1400})
        streams = ("dogeusdt@kline_1m", "dogeusdt@kline_5m", "dogeusdt@kline_1h", "dogeusdt@kline_1d",
                   "btcusdt@kline_1m")

        async def go(s, base):
            async with s.ws_connect(base + "/market/stream?streams=" + "/".join(streams)) as ws:
                frames = []
                t = time.time()
                while time.time() - t < 3.0:
                    try:
                        frames.append(json.loads((await ws.receive(timeout=3)).data))
                    except asyncio.TimeoutError:
                        break
                async with s.post(base + "/_fake/firehose", json={"frames": 20, "stream": "dogeusdt@kline_1m",
                                                                  "start_ms": w0 - 10 * MIN}) as r:
                    self.assertEqual((await r.json())["frames"], 20)
                hose = []
                while len(hose) < 20:
                    d = json.loads((await ws.receive(timeout=5)).data)
                    if d["stream"] == "dogeusdt@kline_1m" and d["data"]["k"]["x"]:
                        hose.append(d["data"]["k"]["t"])
            return frames, hose
        try:
            frames, hose = self.ws_run(go)
        finally:
            self.control("/_fake/config", {"clock_offset_ms": 0})
        seen = {st: [(f["data"]["k"]["t"], f["data"]["k"]["x"]) for f in frames if f.get("stream") == st]
                for st in streams}
        self.assertIn((w0 - MIN, True), seen["dogeusdt@kline_1m"])
        self.assertFalse([k for k in seen["dogeusdt@kline_1m"] if k[0] >= w0], seen["dogeusdt@kline_1m"])
        self.assertFalse([k for k in seen["dogeusdt@kline_5m"] if k[0] >= w0], seen["dogeusdt@kline_5m"])
        self.assertFalse([k for k in seen["dogeusdt@kline_1h"] if k[0] >= w0], seen["dogeusdt@kline_1h"])
        self.assertIn((w0 - 3 * HOUR, False), seen["dogeusdt@kline_1d"])
        self.assertIn((w0, False), seen["btcusdt@kline_1m"])
        self.assertEqual(hose, [w0 - (10 - i) * MIN for i in range(10)] + [w0 + 30 * MIN + i * MIN for i in range(10)])

    def test_ws_firehose(self):
        start = (int(time.time() * 1000) - 10 * DAY) // MIN * MIN

        async def go(s, base):
            async with s.ws_connect(base + "/market/stream?streams=ethusdt@kline_1m") as ws:
                await asyncio.sleep(0.05)
                async with s.post(base + "/_fake/firehose", json={"frames": 3000, "start_ms": start}) as r:
                    res = await r.json()
                frames = []
                while len(frames) < 3000:
                    d = json.loads((await ws.receive(timeout=5)).data)
                    if d["data"]["k"]["x"] and d["data"]["k"]["t"] < start + 5 * DAY:
                        frames.append(d["data"]["k"])
                return res, frames
        t = time.time()
        res, frames = self.ws_run(go)
        self.assertLess(time.time() - t, 10)
        self.assertEqual(res, {"connections": 1, "frames": 3000})
        ts = [k["t"] for k in frames]
        self.assertEqual(ts, list(range(start, start + 3000 * MIN, MIN)))
        S = self.symbol("ETHUSDT")
        truth = json.loads(fb.row_json(S, fb.gen_candle(S, "1m", ts[5])))
        self.assertEqual(frames[5]["c"], truth[4])

    def test_ws_live_closes(self):
        # bursts of closed candles with the current event time, consecutive rows from 90 days
        # back, continued on a new connection; ws_forming 0 leaves only them
        self.control("/_fake/config", {"ws_interval_ms": 20, "ws_close_every_ms": 100, "ws_forming": 0})

        async def collect(s, base, secs):
            frames = []
            async with s.ws_connect(base + "/market/stream?streams=btcusdt@kline_1m/ethusdt@kline_1m") as ws:
                t = time.time()
                while time.time() - t < secs:
                    try:
                        m = await ws.receive(timeout=secs)
                    except asyncio.TimeoutError:
                        break
                    d = json.loads(m.data)
                    frames.append((time.time(), d["stream"], d["data"]))
            return frames
        try:
            fr = self.ws_run(lambda s, b: collect(s, b, 1.0))
            fr2 = self.ws_run(lambda s, b: collect(s, b, 0.5))
        finally:
            self.control("/_fake/config", {"ws_interval_ms": 250, "ws_close_every_ms": 0, "ws_forming": 1})
        self.assertGreaterEqual(len(fr), 12)
        self.assertTrue(all(d["k"]["x"] for _, _, d in fr + fr2))
        now = int(time.time() * 1000)
        for t, _, d in fr:
            self.assertLess(abs(d["E"] - t * 1000), 500)
            self.assertLess(d["k"]["t"], now - 89 * DAY)
        eth = [d["k"]["t"] for _, st, d in fr if st == "ethusdt@kline_1m"]
        eth2 = [d["k"]["t"] for _, st, d in fr2 if st == "ethusdt@kline_1m"]
        self.assertEqual(eth, list(range(eth[0], eth[0] + len(eth) * MIN, MIN)))
        self.assertEqual(eth2, list(range(eth2[0], eth2[0] + len(eth2) * MIN, MIN)))
        self.assertGreater(eth2[0], eth[-1])  # a new connection goes on with new rows
        S = self.symbol("ETHUSDT")
        k = [d["k"] for _, st, d in fr if st == "ethusdt@kline_1m"][0]
        self.assertEqual(k["c"], json.loads(fb.row_json(S, fb.gen_candle(S, "1m", k["t"])))[4])
        self.assertGreaterEqual(self.control("/_fake/stats")["ws"]["live_close_frames"], len(fr) + len(fr2))

    # ---- bulk archives (data.binance.vision) ------------------------------------------------
    def archive(self, path):
        st, h, data = self.req("/data/futures/um/" + path)
        return st, h, data

    def unzip_csv(self, data):
        import io
        import zipfile
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            names = z.namelist()
            self.assertEqual(len(names), 1)
            info = z.getinfo(names[0])
            return names[0], info.compress_type, z.read(names[0]).decode().splitlines()

    def truth_lines(self, sym, iv, start, end):
        out = run_cli("truth", sym, iv, str(start), str(end))
        return [l.split(",", 1)[1] for l in out.splitlines() if l and not l.startswith("symbol")]

    def archive_as_truth(self, lines):
        """Archive rows in the truth CSV's column order (without the symbol)."""
        out = []
        for l in lines:
            f = l.split(",")
            # archive: open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_base,taker_quote,ignore
            out.append(",".join([f[0], f[6], f[1], f[2], f[3], f[4], f[5], f[7], f[8], f[9], f[10]]))
        return out

    def test_archive_monthly_and_daily_equal_the_truth(self):
        import hashlib
        a = fb.days_from_civil(2024, 3, 1) * DAY
        b = fb.days_from_civil(2024, 4, 1) * DAY
        st, h, data = self.archive("monthly/klines/BTCUSDT/1h/BTCUSDT-1h-2024-03.zip")
        self.assertEqual(st, 200)
        self.assertEqual(h["content-type"], "application/zip")
        self.assertNotIn("x-mbx-used-weight-1m", h)
        name, ctype, lines = self.unzip_csv(data)
        self.assertEqual(name, "BTCUSDT-1h-2024-03.csv")
        self.assertEqual(lines[0], fb.KLINE_HEADER)
        self.assertEqual(len(lines) - 1, 31 * 24)
        self.assertEqual(self.archive_as_truth(lines[1:]), self.truth_lines("BTCUSDT", "1h", a, b))
        st, _, ck = self.archive("monthly/klines/BTCUSDT/1h/BTCUSDT-1h-2024-03.zip.CHECKSUM")
        self.assertEqual(st, 200)
        self.assertEqual(ck.decode(), "%s  BTCUSDT-1h-2024-03.zip\n" % hashlib.sha256(data).hexdigest())
        # a daily file, and 1M spelled 1mo
        st, _, data = self.archive("daily/klines/ETHUSDT/1m/ETHUSDT-1m-2024-03-02.zip")
        self.assertEqual(st, 200)
        _, ctype2, lines = self.unzip_csv(data)
        d = fb.days_from_civil(2024, 3, 2) * DAY
        self.assertEqual(self.archive_as_truth(lines[1:]), self.truth_lines("ETHUSDT", "1m", d, d + DAY))
        self.assertNotEqual(ctype, ctype2)  # stored and deflated both occur
        st, _, data = self.archive("monthly/klines/BTCUSDT/1mo/BTCUSDT-1mo-2024-03.zip")
        self.assertEqual(st, 200)
        self.assertEqual(len(self.unzip_csv(data)[2]), 2)
        for bad in ("monthly/klines/BTCUSDT/1M/BTCUSDT-1M-2024-03.zip", "daily/klines/BTCUSDT/1w/BTCUSDT-1w-2024-03-04.zip",
                    "monthly/klines/NOPEUSDT/1h/NOPEUSDT-1h-2024-03.zip", "daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-02-30.zip"):
            st, h, body = self.archive(bad)
            self.assertEqual(st, 404, bad)
            self.assertIn(b"<Code>NoSuchKey</Code>", body)
            self.assertEqual(h["content-type"], "application/xml")

    def test_archive_header_listing_maintenance_and_publication(self):
        # before 2022-05 the CSVs have no header
        st, _, data = self.archive("monthly/klines/BTCUSDT/1d/BTCUSDT-1d-2022-04.zip")
        self.assertEqual(st, 200)
        lines = self.unzip_csv(data)[2]
        self.assertEqual(len(lines), 30)
        self.assertTrue(lines[0][0].isdigit())
        # DOGEUSDT's daily maintenance window is missing from the archive as from REST
        d = fb.days_from_civil(2024, 3, 5) * DAY
        st, _, data = self.archive("daily/klines/DOGEUSDT/1m/DOGEUSDT-1m-2024-03-05.zip")
        lines = self.unzip_csv(data)[2][1:]
        self.assertEqual(self.archive_as_truth(lines), self.truth_lines("DOGEUSDT", "1m", d, d + DAY))
        self.assertEqual(len(lines), 1440 - 30)
        # NEWUSDT: nothing before its listing, its listing month from the listing on
        S = self.symbol("NEWUSDT")
        y, m, _ = fb.civil_from_days(S.onboard // DAY - 40)
        self.assertEqual(self.archive("monthly/klines/NEWUSDT/1h/NEWUSDT-1h-%04d-%02d.zip" % (y, m))[0], 404)
        # today's daily file does not exist yet; yesterday's exists only from 08:30 UTC today
        now = int(time.time() * 1000)
        ty, tm, td = fb.civil_from_days(now // DAY)
        self.assertEqual(self.archive("daily/klines/BTCUSDT/1m/BTCUSDT-1m-%04d-%02d-%02d.zip" % (ty, tm, td))[0], 404)
        yy, ym, yd = fb.civil_from_days(now // DAY - 1)
        want = 200 if now % DAY >= fb.ARCHIVE_DAILY_DELAY else 404
        self.assertEqual(self.archive("daily/klines/BTCUSDT/1m/BTCUSDT-1m-%04d-%02d-%02d.zip" % (yy, ym, yd))[0], want)
        # a month's file from the first Monday of the next month (2024-04-01 was a Monday)
        self.assertEqual(fb.first_monday_after_month(2024, 3), fb.days_from_civil(2024, 4, 1) * DAY)
        self.assertEqual(fb.first_monday_after_month(2024, 4), fb.days_from_civil(2024, 5, 6) * DAY)

    def test_archive_faults(self):
        import hashlib
        f = "BTCUSDT-1m-2024-03.zip"
        self.control("/_fake/archive", {"missing": ["BTCUSDT-1m-2024-02.zip"], "bad_checksum": [f],
                                        "incomplete": {f: [10, 11]}, "truncate": ["BTCUSDT-1m-2024-01.zip"]})
        try:
            self.assertEqual(self.archive("monthly/klines/BTCUSDT/1m/BTCUSDT-1m-2024-02.zip")[0], 404)
            st, _, data = self.archive("monthly/klines/BTCUSDT/1m/" + f)
            self.assertEqual(st, 200)
            lines = self.unzip_csv(data)[2][1:]
            self.assertEqual(len(lines), (31 - 2) * 1440)
            days = {fb.civil_from_days(int(l.split(",")[0]) // DAY)[2] for l in lines}
            self.assertNotIn(10, days)
            self.assertNotIn(11, days)
            ck = self.archive("monthly/klines/BTCUSDT/1m/" + f + ".CHECKSUM")[2].decode()
            self.assertNotEqual(ck.split()[0], hashlib.sha256(data).hexdigest())
            with self.assertRaises((http.client.IncompleteRead, ConnectionError)):
                self.archive("monthly/klines/BTCUSDT/1m/BTCUSDT-1m-2024-01.zip")
            st = self.control("/_fake/archive")
            self.assertGreaterEqual(st["requests"], 4)
            self.assertGreaterEqual(st["not_found"], 1)
            # published late: a delay of days hides recent files
            self.control("/_fake/archive", {"delay_days": 400})
            self.assertEqual(self.archive("monthly/klines/BTCUSDT/1h/BTCUSDT-1h-2024-03.zip")[0],
                             404 if int(time.time() * 1000) < fb.days_from_civil(2024, 4, 1) * DAY + 400 * DAY else 200)
            st, _, body = self.req("/_fake/archive", "POST", {"missing": "all"})
            self.assertEqual(st, 400, body)
        finally:
            self.control("/_fake/archive", {})

    def test_archive_metrics(self):
        d = fb.days_from_civil(2024, 3, 2) * DAY
        st, _, data = self.archive("daily/metrics/BTCUSDT/BTCUSDT-metrics-2024-03-02.zip")
        self.assertEqual(st, 200)
        name, _, lines = self.unzip_csv(data)
        self.assertEqual(name, "BTCUSDT-metrics-2024-03-02.csv")
        self.assertEqual(lines[0], fb.METRICS_HEADER)
        self.assertEqual(len(lines) - 1, 288)
        S = self.symbol("BTCUSDT")
        first = lines[1].split(",")
        self.assertEqual(first[0], "2024-03-02 00:00:00")
        self.assertEqual(first[1], "BTCUSDT")
        self.assertEqual(tuple(first[2:4]), fb.oi_point(S, d)[:2])
        last = lines[-1].split(",")
        self.assertEqual(last[0], "2024-03-02 23:55:00")
        self.assertEqual(tuple(last[2:4]), fb.oi_point(S, d + DAY - 5 * MIN)[:2])


if __name__ == "__main__":
    unittest.main()

--
-- Liquidity ranking, open interest and funding: the SQL surface.
--
SELECT mdfeed_backfill_funding(NULL, '2024-01-01');
SELECT mdfeed_backfill_funding('ethusdt', '2024-01-01');
SELECT mdfeed_backfill_funding('ETHUSDT', '2024-01-02', '2024-01-01');
SELECT mdfeed_backfill_open_interest('ETHUSDT', '2024-01-01', '2024-01-02', 'kraken');
SELECT mdfeed_backfill_open_interest('ETHUSDT', 'infinity');
SELECT mdfeed_liquid_symbols(top_n => 0);
SELECT mdfeed_liquid_symbols(-1);

SELECT mdfeed_backfill_funding('ETHUSDT', '2019-01-01', '2024-01-01') AS f \gset
SELECT mdfeed_backfill_open_interest('ETHUSDT', '2024-01-01', '2024-01-02') AS o \gset
SELECT kind, symbol, "interval", from_time, to_time, state FROM mdfeed.jobs WHERE id IN (:f, :o) ORDER BY id;
SELECT mdfeed_cancel(:f), mdfeed_cancel(:o);

-- ranking: trading perpetuals only, by quote volume, ties by symbol
-- as the Binance adapter stores them: tradable is its normalised status
INSERT INTO mdfeed.instruments (exchange, symbol, status, contract_type, tradable) VALUES
	('binance', 'AUSDT', 'TRADING', 'PERPETUAL', true),
	('binance', 'BUSDT', 'TRADING', 'PERPETUAL', true),
	('binance', 'CUSDT', 'TRADING', 'PERPETUAL', true),
	('binance', 'DUSDT', 'SETTLING', 'PERPETUAL', false),
	('binance', 'EUSDT_261225', 'TRADING', 'CURRENT_QUARTER', false);
SELECT * FROM mdfeed.rank_symbols('binance', ARRAY['AUSDT', 'BUSDT', 'CUSDT', 'DUSDT', 'EUSDT_261225', 'ZUSDT'],
								  ARRAY[10.5, 300, 10.5, 999, 999, 999]::numeric[], 0, NULL);
SELECT * FROM mdfeed.rank_symbols('binance', ARRAY['AUSDT', 'BUSDT', 'CUSDT'], ARRAY[10.5, 300, 10.5]::numeric[], 11, NULL);
SELECT * FROM mdfeed.rank_symbols('binance', ARRAY['AUSDT', 'BUSDT', 'CUSDT'], ARRAY[10.5, 300, 10.5]::numeric[], 0, 2);

-- auto-tracking follows the board; the blacklist wins; leavers keep their data
SELECT mdfeed.apply_auto_track('binance', ARRAY['AUSDT', 'BUSDT', 'CUSDT'], ARRAY[10.5, 300, 10.5]::numeric[], 0, 2);
SELECT symbol, source FROM mdfeed.tracked ORDER BY symbol;
SELECT mdfeed_blacklist(ARRAY['BUSDT']);
SELECT symbol, source FROM mdfeed.tracked ORDER BY symbol;
SELECT mdfeed.apply_auto_track('binance', ARRAY['AUSDT', 'BUSDT', 'CUSDT'], ARRAY[10.5, 300, 99]::numeric[], 0, 2);
SELECT symbol, rank FROM mdfeed.auto_tracked ORDER BY rank;
SELECT symbol, source FROM mdfeed.tracked ORDER BY symbol;
SELECT mdfeed.apply_auto_track('binance', ARRAY[]::text[], ARRAY[]::numeric[], 0, 0);
SELECT count(*) FROM mdfeed.tracked;
SELECT mdfeed_unlist(ARRAY['BUSDT']);
DELETE FROM mdfeed.instruments;

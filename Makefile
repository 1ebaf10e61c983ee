# Makefile for mdfeed (PGXS)

EXTENSION = mdfeed
MODULE_big = mdfeed
DATA = sql/mdfeed--1.0.sql sql/mdfeed--1.0--1.1.sql sql/mdfeed--1.1--1.2.sql \
	sql/mdfeed--1.2--1.3.sql sql/mdfeed--1.3--1.4.sql \
	sql/mdfeed--1.4--1.5.sql sql/mdfeed--1.5--1.6.sql
PGFILEDESC = "mdfeed - crypto market data ingested by background workers"

OBJS = \
	src/mdfeed.o \
	src/config.o \
	src/redact.o \
	src/shard.o \
	src/replica.o \
	src/shmem.o \
	src/interval.o \
	src/decimal.o \
	src/http.o \
	src/budget.o \
	src/json.o \
	src/binance.o \
	src/binance_archive.o \
	src/zipread.o \
	src/archive.o \
	src/archive_candles.o \
	src/archive_metrics.o \
	src/socketio.o \
	src/coindcx.o \
	src/exchange.o \
	src/store.o \
	src/gaps.o \
	src/jobs.o \
	src/worker.o \
	src/rest.o \
	src/instruments.o \
	src/jobrun.o \
	src/candles.o \
	src/backfill.o \
	src/derivs.o \
	src/watch.o \
	src/wsconn.o \
	src/streambuf.o \
	src/stream.o \
	src/launcher.o \
	src/sql_args.o \
	src/sql_jobs.o \
	src/sql_status.o \
	src/sql_parse.o \
	src/latency.o \
	src/sql_models.o \
	src/model_run.o \
	src/model_batch.o \
	src/models.o \
	src/binance_sql.o

PG_CONFIG ?= pg_config

PG_CPPFLAGS = -I$(srcdir)/src $(shell pkg-config --cflags libcurl json-c libwebsockets libzip libcrypto)
SHLIB_LINK = $(shell pkg-config --libs libcurl json-c libwebsockets libzip libcrypto)
PG_CFLAGS = -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers -Wno-sign-compare
ifdef WERROR
PG_CFLAGS += -Werror
endif

# Regression tests (pg_regress): inputs in sql/, outputs in expected/, run on
# a temporary instance that preloads the library.
REGRESS = schema validation privileges secrets parser tracking derivs security exchanges coindcx models shards
REGRESS_OPTS = --temp-instance=$(CURDIR)/tmp_check_regress \
	--temp-config=$(srcdir)/test/regress.conf

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# TAP tests live in test/t and use the helpers in test/perl; PGXS provides
# the prove_installcheck target (run it as a non-root user).
PROVE_TESTS ?= test/t/*.pl
PROVE_FLAGS += -I test/perl

.PHONY: prove_installcheck
prove_installcheck:
	$(prove_installcheck)

# PGXS tracks no header dependencies: rebuild everything when a header changes
$(OBJS): $(wildcard $(srcdir)/src/*.h)

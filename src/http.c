/*-------------------------------------------------------------------------
 *
 * http.c
 *	  The one place mdfeed talks HTTP: libcurl's multi interface driven from
 *	  a latch wait.
 *
 * A worker must stay responsive while a request is in flight: SIGTERM has to
 * end it in milliseconds and a canceled job must not wait for a slow
 * exchange.  So the transfer runs on curl's multi interface, and the process
 * sleeps in a WaitEventSet holding its latch, postmaster death and the
 * sockets curl asked for, instead of inside curl.  Interrupts are checked
 * every time the wait returns.
 *
 * The easy handle is kept for the life of the process so that connections
 * (and TLS sessions) are reused between pages.  Every curl option goes
 * through one macro that turns a failure into an ERROR naming the option.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>

#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/memutils.h"

#include "common.h"
#include "http.h"
#include "shard.h"

/* process-local; never in shared memory */
static CURLM *md_multi = NULL;
static CURL *get_pending = NULL;	/* md_http_get's handle while in flight */
static bool in_get = false;		/* md_http_get is waiting on it */

/*
 * A transfer: one GET, on its own easy handle, in the multi handle with any
 * others in flight.  The struct lives in the memory context that was
 * current when it started; a reset callback there takes the handle out of
 * the multi handle, so that an error that unwinds past its owner (a query
 * cancel, a failed job) cannot leave curl writing into freed memory.
 */
struct MdHttpTransfer
{
	CURL	   *easy;			/* NULL once released */
	bool		done;			/* curl finished it (any outcome) */
	size_t		max_bytes;
	MdHttpResponse resp;
	instr_time	start;
	MemoryContextCallback on_reset;
};

#define MD_MAX_SOCKETS 16

typedef struct MdSock
{
	curl_socket_t fd;
	int			what;			/* CURL_POLL_IN / OUT / INOUT */
} MdSock;

static MdSock md_socks[MD_MAX_SOCKETS];
static int	md_nsocks = 0;
static int64 md_timer_at = -1;	/* when curl's timer fires, or -1 */

#define CURL_SETOPT(h, opt, val) \
	do { \
		CURLcode rc_ = curl_easy_setopt((h), (opt), (val)); \
		if (rc_ != CURLE_OK) \
			ereport(ERROR, \
					(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION), \
					 errmsg("could not set curl option %s: %s", #opt, \
							curl_easy_strerror(rc_)))); \
	} while (0)

#define CURLM_SETOPT(h, opt, val) \
	do { \
		CURLMcode rc_ = curl_multi_setopt((h), (opt), (val)); \
		if (rc_ != CURLM_OK) \
			ereport(ERROR, \
					(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION), \
					 errmsg("could not set curl multi option %s: %s", #opt, \
							curl_multi_strerror(rc_)))); \
	} while (0)

/*
 * md_sock_cb records which sockets curl wants watched, and for what.
 */
static int
md_sock_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	int			i;

	for (i = 0; i < md_nsocks; i++)
		if (md_socks[i].fd == fd)
			break;
	if (what == CURL_POLL_REMOVE)
	{
		if (i < md_nsocks)
			md_socks[i] = md_socks[--md_nsocks];
		return 0;
	}
	if (i == md_nsocks)
	{
		if (md_nsocks == MD_MAX_SOCKETS)
			return -1;			/* curl fails the transfer */
		md_nsocks++;
	}
	md_socks[i].fd = fd;
	md_socks[i].what = what;
	return 0;
}

/*
 * md_timer_cb keeps when curl wants its timeout action: as a deadline, since
 * the waits that pass before it may be many and short.
 */
static int
md_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	md_timer_at = timeout_ms < 0 ? -1 : md_now_ms() + timeout_ms;
	return 0;
}

/*
 * md_write_cb appends body bytes, refusing more than the configured cap: a
 * broken or hostile server must not be able to exhaust memory.
 */
static size_t
md_write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	MdHttpTransfer *t = userdata;
	size_t		n = size * nmemb;

	if (t->resp.body.len + n > t->max_bytes)
	{
		t->resp.outcome = MD_HTTP_TOO_LARGE;
		return 0;
	}
	appendBinaryStringInfo(&t->resp.body, ptr, n);
	return n;
}

/*
 * md_header_cb keeps the answer's short header lines for the adapter to read
 * (md_http_header): which of them matter (a used-weight count, Retry-After)
 * is the exchange's business, not HTTP's.  Long lines (cookies, policies)
 * are skipped so that they cannot crowd the short ones out.
 */
static size_t
md_header_cb(char *buffer, size_t size, size_t nitems, void *userdata)
{
	MdHttpResponse *resp = &((MdHttpTransfer *) userdata)->resp;
	size_t		len = size * nitems;
	size_t		used;

	/* a new header block (after a redirect or a 100 Continue) starts over */
	if (len >= 5 && strncmp(buffer, "HTTP/", 5) == 0)
		resp->headers[0] = '\0';
	used = strlen(resp->headers);
	while (len > 0 && (buffer[len - 1] == '\n' || buffer[len - 1] == '\r'))
		len--;
	if (len > 0 && len <= MD_HTTP_MAX_HEADER_LINE && memchr(buffer, '\0', len) == NULL &&
		used + len + 2 <= sizeof(resp->headers))
	{
		memcpy(resp->headers + used, buffer, len);
		resp->headers[used + len] = '\n';
		resp->headers[used + len + 1] = '\0';
	}
	return size * nitems;
}

/*
 * md_http_header copies the value of the named header (case-insensitive)
 * into out, and says whether the answer had it.
 */
bool
md_http_header(const MdHttpResponse *resp, const char *name, char *out, size_t outlen)
{
	size_t		nlen = strlen(name);
	const char *line = resp->headers;

	while (*line != '\0')
	{
		const char *eol = strchr(line, '\n');
		size_t		len = eol ? (size_t) (eol - line) : strlen(line);

		if (len > nlen && pg_strncasecmp(line, name, nlen) == 0 && line[nlen] == ':')
		{
			const char *v = line + nlen + 1;
			size_t		vlen;

			while (v < line + len && (*v == ' ' || *v == '\t'))
				v++;
			vlen = Min((size_t) (line + len - v), outlen - 1);
			memcpy(out, v, vlen);
			out[vlen] = '\0';
			return true;
		}
		if (eol == NULL)
			break;
		line = eol + 1;
	}
	return false;
}

/*
 * md_http_header_int reads a header holding a non-negative integer of at
 * most nine digits; -1 when the answer has none (or garbage).
 */
int
md_http_header_int(const MdHttpResponse *resp, const char *name)
{
	char		buf[32];
	int			n = 0;

	if (!md_http_header(resp, name, buf, sizeof(buf)))
		return -1;
	for (const char *p = buf; *p; p++)
	{
		if (*p < '0' || *p > '9' || p - buf >= 9)
			return -1;
		n = n * 10 + (*p - '0');
	}
	return buf[0] != '\0' ? n : -1;
}

/*
 * md_debug_cb routes curl's own diagnostics into the server log, at DEBUG2.
 * Only curl's text is passed on, never headers or data, which may carry keys.
 */
static int
md_debug_cb(CURL *handle, curl_infotype type, char *data, size_t size, void *userp)
{
	if (type == CURLINFO_TEXT)
	{
		while (size > 0 && (data[size - 1] == '\n' || data[size - 1] == '\r'))
			size--;
		elog(DEBUG2, "curl: %.*s", (int) size, data);
	}
	return 0;
}

static void
md_http_init(void)
{
	if (md_multi != NULL)
		return;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("could not initialize libcurl")));
	md_multi = curl_multi_init();
	if (md_multi == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not create a libcurl handle")));
	CURLM_SETOPT(md_multi, CURLMOPT_SOCKETFUNCTION, md_sock_cb);
	CURLM_SETOPT(md_multi, CURLMOPT_TIMERFUNCTION, md_timer_cb);
}

/*
 * md_http_release takes a transfer out of curl, finished or not.  Its
 * response (body included) stays readable.
 */
void
md_http_release(MdHttpTransfer *t)
{
	if (t->easy == NULL)
		return;
	curl_multi_remove_handle(md_multi, t->easy);
	curl_easy_cleanup(t->easy);
	t->easy = NULL;
	if (!t->done)
	{
		t->resp.outcome = MD_HTTP_ABORTED;
		strlcpy(t->resp.error, "transfer abandoned", sizeof(t->resp.error));
		t->done = true;
	}
}

static void
md_http_release_cb(void *arg)
{
	md_http_release((MdHttpTransfer *) arg);
}

/*
 * md_http_cleanup releases curl's handles; called at process exit.  The
 * transfers still open belong to memory contexts that die with the process.
 */
void
md_http_cleanup(void)
{
	if (md_multi)
		curl_multi_cleanup(md_multi);
	md_multi = NULL;
}

static void
md_http_setup(MdHttpTransfer *t, const char *url)
{
	CURL	   *h = t->easy;

	CURL_SETOPT(h, CURLOPT_URL, url);
	CURL_SETOPT(h, CURLOPT_PRIVATE, t);
	CURL_SETOPT(h, CURLOPT_NOSIGNAL, 1L);
	CURL_SETOPT(h, CURLOPT_PROTOCOLS_STR, "http,https");
	CURL_SETOPT(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	CURL_SETOPT(h, CURLOPT_FOLLOWLOCATION, 0L);
	CURL_SETOPT(h, CURLOPT_SSL_VERIFYPEER, 1L);
	CURL_SETOPT(h, CURLOPT_SSL_VERIFYHOST, 2L);
	CURL_SETOPT(h, CURLOPT_TIMEOUT_MS, (long) mdfeed_http_timeout_ms);
	CURL_SETOPT(h, CURLOPT_CONNECTTIMEOUT_MS, (long) Min(mdfeed_http_timeout_ms, 10000));
	CURL_SETOPT(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t) t->max_bytes);
	CURL_SETOPT(h, CURLOPT_ACCEPT_ENCODING, "");
	CURL_SETOPT(h, CURLOPT_USERAGENT, "mdfeed/1.0");
	/* exchanges limit by IP: each server of a fleet calls from its own */
	CURL_SETOPT(h, CURLOPT_INTERFACE, md_source_address());
	CURL_SETOPT(h, CURLOPT_WRITEFUNCTION, md_write_cb);
	CURL_SETOPT(h, CURLOPT_WRITEDATA, t);
	CURL_SETOPT(h, CURLOPT_HEADERFUNCTION, md_header_cb);
	CURL_SETOPT(h, CURLOPT_HEADERDATA, t);
	CURL_SETOPT(h, CURLOPT_ERRORBUFFER, t->resp.error);
	if (message_level_is_interesting(DEBUG2))
	{
		CURL_SETOPT(h, CURLOPT_DEBUGFUNCTION, md_debug_cb);
		CURL_SETOPT(h, CURLOPT_VERBOSE, 1L);
	}
}

/*
 * md_http_collect records the outcome of every transfer curl has finished.
 */
static void
md_http_collect(void)
{
	CURLMsg    *msg;
	int			left;

	while ((msg = curl_multi_info_read(md_multi, &left)) != NULL)
	{
		MdHttpTransfer *t = NULL;
		MdHttpResponse *resp;
		instr_time	duration;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &t);
		if (t == NULL || t->done)
			continue;
		resp = &t->resp;
		if (msg->data.result != CURLE_OK)
		{
			if (resp->outcome != MD_HTTP_TOO_LARGE &&
				msg->data.result != CURLE_FILESIZE_EXCEEDED)
				resp->outcome = MD_HTTP_TRANSPORT_ERROR;
			else
				resp->outcome = MD_HTTP_TOO_LARGE;
			if (resp->error[0] == '\0')
				strlcpy(resp->error, curl_easy_strerror(msg->data.result),
						sizeof(resp->error));
		}
		curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &resp->status);
		INSTR_TIME_SET_CURRENT(duration);
		INSTR_TIME_SUBTRACT(duration, t->start);
		resp->elapsed_s = INSTR_TIME_GET_DOUBLE(duration);
		t->done = true;
	}
}

/*
 * md_http_wait sleeps until a socket curl watches is ready, curl's timer
 * fires, the latch is set or timeout_ms (at most 1 s; 0: do not sleep)
 * passes, and tells curl which.
 */
static void
md_http_wait(long timeout_ms)
{
	WaitEventSet *set;
	WaitEvent	events[MD_MAX_SOCKETS + 2];
	long		timeout;
	int			running;
	int			n;

	set = CreateWaitEventSet(CurrentMemoryContext, md_nsocks + 2);
	/*
	 * A pump leaves the latch out: a set latch makes WaitEventSetWait return
	 * it alone, without looking at the sockets, and the pump must not reset
	 * a wakeup meant for the caller's loop.
	 */
	if (timeout_ms > 0)
		AddWaitEventToSet(set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	for (int i = 0; i < md_nsocks; i++)
	{
		uint32		ev = 0;

		if (md_socks[i].what & CURL_POLL_IN)
			ev |= WL_SOCKET_READABLE;
		if (md_socks[i].what & CURL_POLL_OUT)
			ev |= WL_SOCKET_WRITEABLE;
		if (ev != 0)
			AddWaitEventToSet(set, ev, md_socks[i].fd, NULL, NULL);
	}

	/* curl's timer, but never sleep long: interrupts are checked per wake */
	timeout = timeout_ms;
	if (md_timer_at >= 0)
		timeout = Max(0, Min(timeout, md_timer_at - md_now_ms()));
	n = WaitEventSetWait(set, timeout, events, lengthof(events), MD_WAIT_EVENT);
	FreeWaitEventSet(set);

	if (md_timer_at >= 0 && md_now_ms() >= md_timer_at)
	{
		md_timer_at = -1;
		curl_multi_socket_action(md_multi, CURL_SOCKET_TIMEOUT, 0, &running);
	}
	for (int i = 0; i < n; i++)
	{
		int			flags = 0;

		if (events[i].events & WL_LATCH_SET)
		{
			ResetLatch(MyLatch);
			continue;
		}
		if (events[i].events & WL_SOCKET_READABLE)
			flags |= CURL_CSELECT_IN;
		if (events[i].events & WL_SOCKET_WRITEABLE)
			flags |= CURL_CSELECT_OUT;
		if (flags)
			curl_multi_socket_action(md_multi, events[i].fd, flags, &running);
	}
	md_http_collect();
}

/*
 * md_http_start begins a GET of url whose body may be max_bytes at most,
 * and returns at once.  The transfer belongs to the current memory context.
 * It never fails: a transfer curl cannot start is done, with an error.
 */
/*
 * drop_orphan takes out of curl the handle of an md_http_get left by
 * longjmp (a query cancel): its transfer's memory is gone, and curl must
 * not write into it while other transfers move on.
 */
static void
drop_orphan(void)
{
	if (get_pending == NULL || in_get)
		return;
	curl_multi_remove_handle(md_multi, get_pending);
	curl_easy_cleanup(get_pending);
	get_pending = NULL;
}

static MdHttpTransfer *
start_transfer(const char *url, size_t max_bytes, bool guard)
{
	MdHttpTransfer *t = palloc0(sizeof(MdHttpTransfer));
	int			running;

	md_http_init();
	drop_orphan();
	initStringInfo(&t->resp.body);
	t->resp.outcome = MD_HTTP_OK;
	t->max_bytes = max_bytes;
	INSTR_TIME_SET_CURRENT(t->start);
	if (guard)
	{
		t->on_reset.func = md_http_release_cb;
		t->on_reset.arg = t;
		MemoryContextRegisterResetCallback(CurrentMemoryContext, &t->on_reset);
	}

	t->easy = curl_easy_init();
	if (t->easy == NULL)
	{
		t->resp.outcome = MD_HTTP_TRANSPORT_ERROR;
		strlcpy(t->resp.error, "could not create a transfer", sizeof(t->resp.error));
		t->done = true;
		return t;
	}
	md_http_setup(t, url);
	if (curl_multi_add_handle(md_multi, t->easy) != CURLM_OK)
	{
		curl_easy_cleanup(t->easy);
		t->easy = NULL;
		t->resp.outcome = MD_HTTP_TRANSPORT_ERROR;
		strlcpy(t->resp.error, "could not start the transfer", sizeof(t->resp.error));
		t->done = true;
		return t;
	}
	curl_multi_socket_action(md_multi, CURL_SOCKET_TIMEOUT, 0, &running);
	md_http_collect();
	return t;
}

MdHttpTransfer *
md_http_start(const char *url, size_t max_bytes)
{
	return start_transfer(url, max_bytes, true);
}

/*
 * md_http_pump lets every transfer in flight move on with what has arrived,
 * without sleeping: a worker busy with one answer calls it between batches
 * so that the next downloads meanwhile.
 */
void
md_http_pump(void)
{
	if (md_multi == NULL)
		return;
	drop_orphan();
	md_http_wait(0);
}

/*
 * md_http_done says whether a transfer has finished (any outcome).
 */
bool
md_http_done(const MdHttpTransfer *t)
{
	return t->done;
}

/*
 * md_http_finish waits for a transfer to finish and returns its response.
 * Interrupts are served while it waits; abort_check, when it says stop,
 * abandons the transfer (outcome MD_HTTP_ABORTED).
 */
MdHttpResponse *
md_http_finish(MdHttpTransfer *t, MdHttpAbortCheck abort_check)
{
	while (!t->done)
	{
		CHECK_FOR_INTERRUPTS();
		if (abort_check && abort_check())
		{
			t->resp.outcome = MD_HTTP_ABORTED;
			strlcpy(t->resp.error, "transfer abandoned", sizeof(t->resp.error));
			t->done = true;
			break;
		}
		md_http_wait(1000);
	}
	md_http_release(t);
	return &t->resp;
}

/*
 * md_http_get performs one GET, whose answer may be mdfeed.rest_max_response_size
 * at most.  It returns with resp filled in, whatever happened; only
 * interrupts (SIGTERM, cancel) leave it by longjmp or exit.
 */
void
md_http_get(const char *url, MdHttpResponse *resp, MdHttpAbortCheck abort_check)
{
	MdHttpTransfer *t;

	/*
	 * A call left by longjmp (a query cancel) may have left its handle in
	 * curl.  md_http_get's transfers take no reset callback, of which a
	 * context would gather one per call: the handle is remembered here.
	 */
	t = start_transfer(url, (size_t) mdfeed_rest_max_response_kb * 1024, false);
	get_pending = t->easy;
	in_get = true;
	PG_TRY();
	{
		*resp = *md_http_finish(t, abort_check);
	}
	PG_FINALLY();
	{
		/* after a longjmp the handle is an orphan, for drop_orphan */
		in_get = false;
	}
	PG_END_TRY();
	get_pending = NULL;
	/* the body is the caller's now */
	pfree(t);
}

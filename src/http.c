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

/* process-local; never in shared memory */
static CURLM *md_multi = NULL;
static CURL *md_easy = NULL;
static bool md_easy_in_multi = false;

#define MD_MAX_SOCKETS 8

typedef struct MdSock
{
	curl_socket_t fd;
	int			what;			/* CURL_POLL_IN / OUT / INOUT */
} MdSock;

static MdSock md_socks[MD_MAX_SOCKETS];
static int	md_nsocks = 0;
static long md_timer_ms = -1;

/* the response being filled by the callbacks */
static MdHttpResponse *md_cur = NULL;
static size_t md_max_bytes = 0;

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

static int
md_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	md_timer_ms = timeout_ms;
	return 0;
}

/*
 * md_write_cb appends body bytes, refusing more than the configured cap: a
 * broken or hostile server must not be able to exhaust memory.
 */
static size_t
md_write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	size_t		n = size * nmemb;

	if (md_cur == NULL)
		return 0;
	if (md_cur->body.len + n > md_max_bytes)
	{
		md_cur->outcome = MD_HTTP_TOO_LARGE;
		return 0;
	}
	appendBinaryStringInfo(&md_cur->body, ptr, n);
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
	size_t		len = size * nitems;
	size_t		used;

	if (md_cur == NULL)
		return len;
	/* a new header block (after a redirect or a 100 Continue) starts over */
	if (len >= 5 && strncmp(buffer, "HTTP/", 5) == 0)
		md_cur->headers[0] = '\0';
	used = strlen(md_cur->headers);
	while (len > 0 && (buffer[len - 1] == '\n' || buffer[len - 1] == '\r'))
		len--;
	if (len > 0 && len <= MD_HTTP_MAX_HEADER_LINE && memchr(buffer, '\0', len) == NULL &&
		used + len + 2 <= sizeof(md_cur->headers))
	{
		memcpy(md_cur->headers + used, buffer, len);
		md_cur->headers[used + len] = '\n';
		md_cur->headers[used + len + 1] = '\0';
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
	md_easy = curl_easy_init();
	if (md_multi == NULL || md_easy == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not create a libcurl handle")));
	CURLM_SETOPT(md_multi, CURLMOPT_SOCKETFUNCTION, md_sock_cb);
	CURLM_SETOPT(md_multi, CURLMOPT_TIMERFUNCTION, md_timer_cb);
}

/*
 * md_http_cleanup releases curl's handles; called at process exit.
 */
void
md_http_cleanup(void)
{
	if (md_easy_in_multi)
		curl_multi_remove_handle(md_multi, md_easy);
	md_easy_in_multi = false;
	if (md_easy)
		curl_easy_cleanup(md_easy);
	if (md_multi)
		curl_multi_cleanup(md_multi);
	md_easy = NULL;
	md_multi = NULL;
}

static void
md_http_setup(const char *url, MdHttpResponse *resp)
{
	CURL	   *h = md_easy;

	/* reset options but keep the connection cache and TLS sessions */
	curl_easy_reset(h);
	CURL_SETOPT(h, CURLOPT_URL, url);
	CURL_SETOPT(h, CURLOPT_NOSIGNAL, 1L);
	CURL_SETOPT(h, CURLOPT_PROTOCOLS_STR, "http,https");
	CURL_SETOPT(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	CURL_SETOPT(h, CURLOPT_FOLLOWLOCATION, 0L);
	CURL_SETOPT(h, CURLOPT_SSL_VERIFYPEER, 1L);
	CURL_SETOPT(h, CURLOPT_SSL_VERIFYHOST, 2L);
	CURL_SETOPT(h, CURLOPT_TIMEOUT_MS, (long) mdfeed_http_timeout_ms);
	CURL_SETOPT(h, CURLOPT_CONNECTTIMEOUT_MS, (long) Min(mdfeed_http_timeout_ms, 10000));
	CURL_SETOPT(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t) md_max_bytes);
	CURL_SETOPT(h, CURLOPT_ACCEPT_ENCODING, "");
	CURL_SETOPT(h, CURLOPT_USERAGENT, "mdfeed/1.0");
	CURL_SETOPT(h, CURLOPT_WRITEFUNCTION, md_write_cb);
	CURL_SETOPT(h, CURLOPT_HEADERFUNCTION, md_header_cb);
	CURL_SETOPT(h, CURLOPT_ERRORBUFFER, resp->error);
	if (message_level_is_interesting(DEBUG2))
	{
		CURL_SETOPT(h, CURLOPT_DEBUGFUNCTION, md_debug_cb);
		CURL_SETOPT(h, CURLOPT_VERBOSE, 1L);
	}
}

/*
 * md_http_wait sleeps until a socket curl watches is ready, curl's timer
 * fires, or the latch is set, and tells curl which.
 */
static void
md_http_wait(int *running)
{
	WaitEventSet *set;
	WaitEvent	events[MD_MAX_SOCKETS + 2];
	long		timeout;
	int			n;

	set = CreateWaitEventSet(CurrentMemoryContext, md_nsocks + 2);
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
	timeout = (md_timer_ms < 0 || md_timer_ms > 1000) ? 1000 : md_timer_ms;
	n = WaitEventSetWait(set, timeout, events, lengthof(events), MD_WAIT_EVENT);
	FreeWaitEventSet(set);

	if (n == 0)
	{
		md_timer_ms = -1;
		curl_multi_socket_action(md_multi, CURL_SOCKET_TIMEOUT, 0, running);
		return;
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
			curl_multi_socket_action(md_multi, events[i].fd, flags, running);
	}
}

/*
 * md_http_get performs one GET.  It returns with resp filled in, whatever
 * happened; only interrupts (SIGTERM, cancel) leave it by longjmp or exit.
 */
void
md_http_get(const char *url, MdHttpResponse *resp, MdHttpAbortCheck abort_check)
{
	int			running = 1;
	CURLMsg    *msg;
	int			left;
	instr_time	start,
				duration;

	md_http_init();
	/* a previous call left by longjmp may have left the handle attached */
	if (md_easy_in_multi)
	{
		curl_multi_remove_handle(md_multi, md_easy);
		md_easy_in_multi = false;
	}

	memset(resp, 0, sizeof(*resp));
	initStringInfo(&resp->body);
	resp->outcome = MD_HTTP_OK;
	md_max_bytes = (size_t) mdfeed_rest_max_response_kb * 1024;
	md_cur = resp;

	md_http_setup(url, resp);
	md_nsocks = 0;
	md_timer_ms = -1;
	INSTR_TIME_SET_CURRENT(start);

	if (curl_multi_add_handle(md_multi, md_easy) != CURLM_OK)
	{
		resp->outcome = MD_HTTP_TRANSPORT_ERROR;
		strlcpy(resp->error, "could not start the transfer", sizeof(resp->error));
		md_cur = NULL;
		return;
	}
	md_easy_in_multi = true;
	curl_multi_socket_action(md_multi, CURL_SOCKET_TIMEOUT, 0, &running);

	while (running > 0)
	{
		CHECK_FOR_INTERRUPTS();
		if (abort_check && abort_check())
		{
			resp->outcome = MD_HTTP_ABORTED;
			strlcpy(resp->error, "transfer abandoned", sizeof(resp->error));
			break;
		}
		md_http_wait(&running);
	}

	if (resp->outcome != MD_HTTP_ABORTED)
	{
		while ((msg = curl_multi_info_read(md_multi, &left)) != NULL)
		{
			if (msg->msg != CURLMSG_DONE)
				continue;
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
		}
		curl_easy_getinfo(md_easy, CURLINFO_RESPONSE_CODE, &resp->status);
	}

	curl_multi_remove_handle(md_multi, md_easy);
	md_easy_in_multi = false;
	md_cur = NULL;
	INSTR_TIME_SET_CURRENT(duration);
	INSTR_TIME_SUBTRACT(duration, start);
	resp->elapsed_s = INSTR_TIME_GET_DOUBLE(duration);
}

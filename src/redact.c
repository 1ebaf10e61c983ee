/*-------------------------------------------------------------------------
 *
 * redact.c
 *	  Keep mdfeed.api_key and mdfeed.api_secret out of the server log.
 *
 * The log hook cannot know which words of a message are a secret, so it
 * decides by what a statement sets or names.  Blanking "the first quoted
 * thing after the name" (the approach this file replaces) both leaks and
 * mangles: it misses values with quotes inside, set_config() and bare words,
 * and it blanks harmless text such as current_setting('mdfeed.api_key').
 * Instead a small scanner splits text into tokens the way PostgreSQL's lexer
 * (scan.l) does for what matters here: '' literals with '' doubling (and
 * backslash escapes when standard_conforming_strings is off), E'' with
 * backslash escapes, U&'' and U&"" (with UESCAPE), B'', X'', N'',
 * $tag$...$tag$ bodies, "" identifiers with "" doubling, -- and nested
 * comments, $n parameters and the ";" between statements.
 *
 * The policy, per statement (text between semicolons):
 *
 * - A statement names a secret when a name chain (word or quoted identifier,
 *   ".", word or quoted identifier; any case, comments and spaces allowed
 *   around the dot, escapes decoded) is mdfeed.api_key or mdfeed.api_secret,
 *   or a quoted identifier, literal or comment contains such a name.
 * - In such a statement every literal is replaced by ******** except a
 *   literal that is exactly a secret's name, so SHOW mdfeed.api_key and
 *   SELECT current_setting('mdfeed.api_key') stay readable.  Literals hold
 *   values; names hold none.  A DO or function body that names a secret is
 *   one literal and is masked whole.
 * - After a secret's name followed by TO or = (at most two bare words
 *   between, for "parameter "x" changed to "v"", or a colon right after it
 *   in messages), the rest of the statement is a value: bare words
 *   (DEFAULT excepted), numbers and quoted identifiers are masked too.
 * - Statements that do not name a secret are left alone.
 *
 * The scanner marks the bytes to mask (a literal's body, not its quotes);
 * each run of marked bytes becomes one ********.  Marking rather than
 * rewriting lets two readings of the same text be combined: with
 * standard_conforming_strings off, SQL reads \' as a quote inside a
 * literal, logged parameters do not, and what either reading takes for a
 * value is masked.
 *
 * This runs over the message, detail, detail_log, hint, context and
 * internal query of every report.  Messages are prose with SQL inside:
 * "statement: ...", "parameters: $1 = '...'", and context lines such as
 * SQL statement "..." whose embedded SQL is not escaped, so there the quote
 * after "SQL statement " (or "SQL expression ", "PL/pgSQL assignment ") is
 * taken as punctuation and the SQL inside is scanned as SQL.
 *
 * The statement being reported (debug_query_string) cannot be rewritten:
 * when it has a value to mask or holds a current secret value, the hook sets
 * hide_stmt, and if PostgreSQL would have printed a STATEMENT line
 * (check_log_of_query) the scrubbed statement is appended to detail_log,
 * which reaches only the server log (the client sent the statement itself).
 * When that statement or the internal query names a secret, syntax errors'
 * "at or near "..."" fragments are masked, every literal of the detail,
 * hint and context is (logged parameters: "$1 = '...'" name nothing
 * themselves when the name is in the statement), and the statement's values
 * (4 bytes or more) are masked wherever else they appear, as are the current
 * secret values (6 bytes or more, shorter ones would mask ordinary words).
 *
 * In a message, a quoted string that contains a secret's name but is not
 * one is masked whole: it may be SQL quoted without a cue known here (as in
 * translated messages).
 *
 * Known limits: messages in other languages than English keep the "at or
 * near" fragment; a parameter value truncated
 * by log_parameter_max_length may cut a secret's name short; an empty
 * literal stays empty.
 *
 * The hook runs inside error reporting (in ErrorContext): it must never
 * raise.  It allocates only with MCXT_ALLOC_NO_OOM, each string at most a
 * bounded multiple of its input (measured first, then written), and when
 * memory runs out it blanks the field in place instead.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "parser/parser.h"
#include "tcop/tcopprot.h"
#include "utils/memutils.h"

#include "redact.h"

#define MASK "********"
#define MASK_LEN 8
#define MAX_VALUES 16
#define MIN_STMT_VALUE 4
#define MIN_CURRENT_VALUE 6

static const char *const secret_names[] = {"mdfeed.api_key", "mdfeed.api_secret"};
static const char *const secret_leaves[] = {"api_key", "api_secret"};

/* the quote after these (in messages) opens unescaped SQL, not a name */
static const char *const sql_markers[] = {
	"SQL statement ", "SQL expression ", "PL/pgSQL assignment "
};

typedef enum TokType
{
	T_SPACE,
	T_COMMENT,
	T_STRING,					/* any literal: '', E'', U&'', B'', $$ */
	T_QIDENT,					/* "" or U&"" */
	T_WORD,
	T_NUMBER,
	T_PARAM,
	T_SEMI,
	T_DOT,
	T_OP,
	T_OTHER
} TokType;

typedef enum Escapes
{
	ESC_NONE,
	ESC_BACKSLASH,				/* E'' */
	ESC_UNICODE					/* U&'' and U&"" */
} Escapes;

typedef struct Tok
{
	TokType		type;
	const char *start;
	size_t		len;			/* whole token */
	size_t		open;			/* bytes before the body: E', $tag$, ... */
	size_t		body;			/* bytes of the body */
	Escapes		esc;
	char		quote;			/* ' or " when the body doubles it, else 0 */
	bool		terminated;
} Tok;

typedef struct Lexer
{
	const char *text;			/* start of the whole text, to look behind */
	const char *p;
	const char *end;
	bool		scs;			/* standard_conforming_strings */
	bool		prose;			/* a message with SQL inside, not SQL */
} Lexer;

/* output: counts only while buf is NULL */
typedef struct Out
{
	char	   *buf;
	size_t		len;
	size_t		cap;
	bool		changed;
} Out;

/* bytes of one text to mask, as the scanner finds them */
typedef struct Marks
{
	const char *text;
	size_t		len;
	unsigned char *marks;		/* one per byte of text */
	bool		any;
} Marks;

/* decoding room for one token's body */
typedef struct Scratch
{
	char	   *buf;
	size_t		cap;
} Scratch;

/* values masked in the reported statement, to mask elsewhere too */
typedef struct Values
{
	int			n;
	const char *v[MAX_VALUES + 2];
} Values;

/*
 * is_space and the character classes below are scan.l's, in ASCII: bytes
 * from 0x80 up are identifier characters, whatever the encoding.
 */
static bool
is_space(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static bool
is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static bool
ident_start(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' || c >= 0x80;
}

static bool
ident_cont(unsigned char c)
{
	return ident_start(c) || is_digit(c) || c == '$';
}

static bool
is_opchar(unsigned char c)
{
	return c != '\0' && strchr("~!@#^&|`?+-*/%<>=", c) != NULL;
}

/*
 * hexval gives the value of a hex digit, -1 for anything else.
 */
static int
hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * ci_equal and ci_contains compare ASCII case-insensitively, as GUC names
 * are compared; the text may hold NUL bytes, the name never does.
 */
static bool
ci_equal(const char *s, size_t len, const char *name)
{
	size_t		n = strlen(name);

	return len == n && pg_strncasecmp(s, name, n) == 0;
}

static bool
ci_contains(const char *s, size_t len, const char *name)
{
	size_t		n = strlen(name);

	for (size_t i = 0; i + n <= len; i++)
		if (pg_strncasecmp(s + i, name, n) == 0)
			return true;
	return false;
}

/*
 * is_secret_name says whether s is exactly a secret's name.
 */
static bool
is_secret_name(const char *s, size_t len)
{
	for (int i = 0; i < lengthof(secret_names); i++)
		if (ci_equal(s, len, secret_names[i]))
			return true;
	return false;
}

/*
 * has_secret_name says whether a secret's name occurs anywhere in s.
 */
static bool
has_secret_name(const char *s, size_t len)
{
	for (int i = 0; i < lengthof(secret_names); i++)
		if (ci_contains(s, len, secret_names[i]))
			return true;
	return false;
}

/*
 * lex_quoted finds the end of a quoted body that starts open bytes into the
 * token; an unterminated one runs to the end of the text, as in the lexer.
 */
static void
lex_quoted(Lexer *lx, Tok *t, size_t open, char quote, Escapes esc)
{
	const char *s = t->start + open;

	t->open = open;
	t->quote = quote;
	t->esc = esc;
	t->terminated = false;
	while (s < lx->end)
	{
		if (esc == ESC_BACKSLASH && *s == '\\' && s + 1 < lx->end)
		{
			s += 2;
			continue;
		}
		if (*s == quote)
		{
			if (s + 1 < lx->end && s[1] == quote)
			{
				s += 2;
				continue;
			}
			t->terminated = true;
			break;
		}
		s++;
	}
	t->body = s - (t->start + open);
	t->len = (t->terminated ? s + 1 : s) - t->start;
}

/*
 * lex_dollar reads $tag$...$tag$ (tag as in scan.l's dolqdelim); false if
 * the $ opens no dollar quote.
 */
static bool
lex_dollar(Lexer *lx, Tok *t)
{
	const char *s = t->start + 1;
	size_t		taglen;

	if (s >= lx->end)
		return false;
	if (*s != '$')
	{
		if (!ident_start(*s))
			return false;
		while (s < lx->end && ident_cont(*s) && *s != '$')
			s++;
		if (s >= lx->end || *s != '$')
			return false;
	}
	taglen = s + 1 - t->start;
	t->type = T_STRING;
	t->open = taglen;
	for (const char *h = s + 1; h + taglen <= lx->end; h++)
	{
		if (*h == '$' && memcmp(h, t->start, taglen) == 0)
		{
			t->body = h - (t->start + taglen);
			t->len = h + taglen - t->start;
			t->terminated = true;
			return true;
		}
	}
	t->body = lx->end - (t->start + taglen);
	t->len = lx->end - t->start;
	return true;
}

/*
 * after_sql_marker says whether the quote at p opens SQL embedded in a
 * message, such as the SQL statement "..." line of a PL/pgSQL context.
 */
static bool
after_sql_marker(Lexer *lx, const char *p)
{
	for (int i = 0; i < lengthof(sql_markers); i++)
	{
		size_t		n = strlen(sql_markers[i]);

		if ((size_t) (p - lx->text) >= n && memcmp(p - n, sql_markers[i], n) == 0)
			return true;
	}
	return false;
}

/*
 * next_tok reads the token at lx->p; false at the end of the text.
 */
static bool
next_tok(Lexer *lx, Tok *t)
{
	const char *p = lx->p;
	const char *e = lx->end;
	unsigned char c;

	if (p >= e)
		return false;
	memset(t, 0, sizeof(*t));
	t->start = p;
	t->len = 1;
	t->type = T_OTHER;
	c = *p;

	if (is_space(c))
	{
		while (p < e && is_space(*p))
			p++;
		t->type = T_SPACE;
		t->len = p - t->start;
	}
	else if (c == '-' && p + 1 < e && p[1] == '-')
	{
		const char *s = p + 2;

		while (s < e && *s != '\n')
			s++;
		t->type = T_COMMENT;
		t->open = 2;
		t->body = s - (p + 2);
		t->len = s - p;
	}
	else if (c == '/' && p + 1 < e && p[1] == '*')
	{
		const char *s = p + 2;
		int			depth = 1;

		while (s < e)
		{
			if (s + 1 < e && s[0] == '/' && s[1] == '*')
			{
				depth++;
				s += 2;
			}
			else if (s + 1 < e && s[0] == '*' && s[1] == '/')
			{
				if (--depth == 0)
					break;
				s += 2;
			}
			else
				s++;
		}
		t->type = T_COMMENT;
		t->open = 2;
		t->body = s - (p + 2);
		t->len = (s < e ? s + 2 : e) - p;
	}
	else if (c == '\'')
	{
		t->type = T_STRING;
		lex_quoted(lx, t, 1, '\'', lx->scs ? ESC_NONE : ESC_BACKSLASH);
	}
	else if ((c == 'e' || c == 'E') && p + 1 < e && p[1] == '\'')
	{
		t->type = T_STRING;
		lex_quoted(lx, t, 2, '\'', ESC_BACKSLASH);
	}
	else if ((c == 'n' || c == 'N') && p + 1 < e && p[1] == '\'')
	{
		t->type = T_STRING;
		lex_quoted(lx, t, 2, '\'', lx->scs ? ESC_NONE : ESC_BACKSLASH);
	}
	else if ((c == 'b' || c == 'B' || c == 'x' || c == 'X') && p + 1 < e && p[1] == '\'')
	{
		t->type = T_STRING;
		lex_quoted(lx, t, 2, '\'', ESC_NONE);
	}
	else if ((c == 'u' || c == 'U') && p + 2 < e && p[1] == '&' &&
			 (p[2] == '\'' || p[2] == '"'))
	{
		t->type = p[2] == '"' ? T_QIDENT : T_STRING;
		lex_quoted(lx, t, 3, p[2], ESC_UNICODE);
	}
	else if (c == '"')
	{
		if (!(lx->prose && after_sql_marker(lx, p)))
		{
			t->type = T_QIDENT;
			lex_quoted(lx, t, 1, '"', ESC_NONE);
		}
	}
	else if (c == '$')
	{
		if (p + 1 < e && is_digit(p[1]))
		{
			p++;
			while (p < e && is_digit(*p))
				p++;
			t->type = T_PARAM;
			t->len = p - t->start;
		}
		else if (!lex_dollar(lx, t))
			t->len = 1;
	}
	else if (is_digit(c) || (c == '.' && p + 1 < e && is_digit(p[1])))
	{
		while (p < e && (ident_cont(*p) || *p == '.') && *p != '$')
			p++;
		t->type = T_NUMBER;
		t->len = p - t->start;
	}
	else if (ident_start(c))
	{
		while (p < e && ident_cont(*p))
			p++;
		t->type = T_WORD;
		t->len = p - t->start;
	}
	else if (c == ';')
		t->type = T_SEMI;
	else if (c == '.')
		t->type = T_DOT;
	else if (is_opchar(c))
	{
		p++;
		while (p < e && is_opchar(*p) &&
			   !(p + 1 < e && ((p[0] == '-' && p[1] == '-') || (p[0] == '/' && p[1] == '*'))))
			p++;
		t->type = T_OP;
		t->len = p - t->start;
	}
	lx->p = t->start + t->len;
	return true;
}

/*
 * peek_uescape returns the escape character a UESCAPE clause after the
 * current token sets, or the backslash.
 */
static char
peek_uescape(const Lexer *lx)
{
	Lexer		l = *lx;
	Tok			t;
	bool		seen = false;

	while (next_tok(&l, &t))
	{
		if (t.type == T_SPACE || t.type == T_COMMENT)
			continue;
		if (!seen && t.type == T_WORD && ci_equal(t.start, t.len, "uescape"))
		{
			seen = true;
			continue;
		}
		if (seen && t.type == T_STRING && t.quote == '\'' && t.body == 1)
			return t.start[t.open];
		break;
	}
	return '\\';
}

/*
 * put_utf8 writes code point cp (or ? if it is none) and returns its size;
 * every escape that yields it is at least as long as the bytes written.
 */
static size_t
put_utf8(char *dst, unsigned long cp)
{
	if (cp < 0x80)
	{
		dst[0] = (char) cp;
		return 1;
	}
	if (cp < 0x800)
	{
		dst[0] = (char) (0xC0 | (cp >> 6));
		dst[1] = (char) (0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000)
	{
		dst[0] = (char) (0xE0 | (cp >> 12));
		dst[1] = (char) (0x80 | ((cp >> 6) & 0x3F));
		dst[2] = (char) (0x80 | (cp & 0x3F));
		return 3;
	}
	if (cp <= 0x10FFFF)
	{
		dst[0] = (char) (0xF0 | (cp >> 18));
		dst[1] = (char) (0x80 | ((cp >> 12) & 0x3F));
		dst[2] = (char) (0x80 | ((cp >> 6) & 0x3F));
		dst[3] = (char) (0x80 | (cp & 0x3F));
		return 4;
	}
	dst[0] = '?';
	return 1;
}

/*
 * read_hex reads exactly n hex digits (or, if !exact, up to n, at least
 * one) at s; -1 if they are not there.
 */
static long
read_hex(const char *s, const char *e, int n, bool exact, int *used)
{
	long		v = 0;
	int			i;

	for (i = 0; i < n && s + i < e && hexval(s[i]) >= 0; i++)
		v = v * 16 + hexval(s[i]);
	if (i == 0 || (exact && i < n))
		return -1;
	*used = i;
	return v;
}

/*
 * decode_body writes the value a literal or quoted identifier stands for
 * (quotes undoubled, escapes applied) to dst, which has room for t->body
 * bytes: no escape yields more bytes than it is written with.
 */
static size_t
decode_body(const Tok *t, char *dst, char uesc)
{
	const char *s = t->start + t->open;
	const char *e = s + t->body;
	size_t		n = 0;
	int			used;
	long		v;

	while (s < e)
	{
		if (t->quote && *s == t->quote && s + 1 < e && s[1] == t->quote)
		{
			dst[n++] = t->quote;
			s += 2;
		}
		else if (t->esc == ESC_BACKSLASH && *s == '\\' && s + 1 < e)
		{
			s++;
			switch (*s)
			{
				case 'b':
					dst[n++] = '\b';
					s++;
					break;
				case 'f':
					dst[n++] = '\f';
					s++;
					break;
				case 'n':
					dst[n++] = '\n';
					s++;
					break;
				case 'r':
					dst[n++] = '\r';
					s++;
					break;
				case 't':
					dst[n++] = '\t';
					s++;
					break;
				case 'x':
					if ((v = read_hex(s + 1, e, 2, false, &used)) >= 0)
					{
						dst[n++] = (char) v;
						s += 1 + used;
					}
					else
						dst[n++] = *s++;
					break;
				case 'u':
				case 'U':
					if ((v = read_hex(s + 1, e, *s == 'u' ? 4 : 8, true, &used)) >= 0)
					{
						n += put_utf8(dst + n, (unsigned long) v);
						s += 1 + used;
					}
					else
						dst[n++] = *s++;
					break;
				default:
					if (*s >= '0' && *s <= '7')
					{
						int			o = 0;

						for (used = 0; used < 3 && s < e && *s >= '0' && *s <= '7'; used++)
							o = o * 8 + (*s++ - '0');
						dst[n++] = (char) o;
					}
					else
						dst[n++] = *s++;
					break;
			}
		}
		else if (t->esc == ESC_UNICODE && *s == uesc && s + 1 < e)
		{
			if (s[1] == uesc)
			{
				dst[n++] = uesc;
				s += 2;
			}
			else if (s[1] == '+' && (v = read_hex(s + 2, e, 6, true, &used)) >= 0)
			{
				n += put_utf8(dst + n, (unsigned long) v);
				s += 8;
			}
			else if ((v = read_hex(s + 1, e, 4, true, &used)) >= 0)
			{
				n += put_utf8(dst + n, (unsigned long) v);
				s += 5;
			}
			else
				dst[n++] = *s++;
		}
		else
			dst[n++] = *s++;
	}
	return n;
}

/*
 * tok_text gives the text a token stands for: decoded into the scratch
 * buffer (valid until the next call), or raw if there is no room.
 */
static const char *
tok_text(const Lexer *lx, const Tok *t, Scratch *sc, size_t *len)
{
	if (t->type == T_STRING || t->type == T_QIDENT)
	{
		if (sc->buf == NULL || t->body > sc->cap)
		{
			*len = t->body;
			return t->start + t->open;
		}
		*len = decode_body(t, sc->buf, t->esc == ESC_UNICODE ? peek_uescape(lx) : '\\');
		return sc->buf;
	}
	if (t->type == T_COMMENT)
	{
		*len = t->body;
		return t->start + t->open;
	}
	*len = t->len;
	return t->start;
}

/*
 * chain_feed follows name chains (mdfeed . api_key, any quoting) across
 * significant tokens; true when t completes a secret's name.
 */
static bool
chain_feed(int *state, const Tok *t, const char *s, size_t len)
{
	bool		ident = t->type == T_WORD || t->type == T_QIDENT;

	if (*state == 2 && ident)
	{
		for (int i = 0; i < lengthof(secret_leaves); i++)
		{
			if (ci_equal(s, len, secret_leaves[i]))
			{
				*state = 0;
				return true;
			}
		}
	}
	else if (*state == 1 && t->type == T_DOT)
	{
		*state = 2;
		return false;
	}
	*state = (ident && ci_equal(s, len, "mdfeed")) ? 1 : 0;
	return t->type == T_QIDENT && is_secret_name(s, len);
}

/*
 * stmt_scan reads one statement (through its semicolon) and says whether
 * it names a secret.
 */
static bool
stmt_scan(Lexer *lx, Scratch *sc)
{
	Tok			t;
	int			chain = 0;
	bool		names = false;

	while (next_tok(lx, &t))
	{
		const char *s;
		size_t		len;

		if (t.type == T_SEMI)
			break;
		if (t.type == T_SPACE)
			continue;
		s = tok_text(lx, &t, sc, &len);
		if (t.type == T_COMMENT)
		{
			/* a comment between the parts of a name does not break it */
			names |= has_secret_name(s, len);
			continue;
		}
		names |= chain_feed(&chain, &t, s, len);
		if (t.type == T_STRING || t.type == T_QIDENT)
			names |= has_secret_name(s, len);
	}
	return names;
}

/*
 * put appends n bytes to the output, or only counts them while measuring.
 */
static void
put(Out *o, const char *s, size_t n)
{
	if (o->buf != NULL && o->len + n <= o->cap)
		memcpy(o->buf + o->len, s, n);
	o->len += n;
}

/*
 * record_value keeps a copy of a masked value of the reported statement,
 * to mask it in the other fields too.
 */
static void
record_value(Values *vals, const char *s, size_t len)
{
	char	   *copy;

	if (vals == NULL || vals->n >= MAX_VALUES || len < MIN_STMT_VALUE ||
		memchr(s, '\0', len) != NULL)
		return;
	copy = palloc_extended(len + 1, MCXT_ALLOC_NO_OOM);
	if (copy == NULL)
		return;
	memcpy(copy, s, len);
	copy[len] = '\0';
	vals->v[vals->n++] = copy;
}

/*
 * mark sets the marks of n bytes from s, which the output masks.
 */
static void
mark(Marks *m, const char *s, size_t n)
{
	if (n == 0)
		return;
	memset(m->marks + (s - m->text), 1, n);
	m->any = true;
}

/*
 * mark_body marks the body of a literal, quoted identifier or comment, so
 * that its quotes or delimiters stay; other tokens are marked whole.
 */
static void
mark_body(Marks *m, const Tok *t)
{
	if (t->type == T_STRING || t->type == T_QIDENT || t->type == T_COMMENT)
		mark(m, t->start + t->open, t->body);
	else
		mark(m, t->start, t->len);
}

/*
 * stmt_mark marks the values of one statement that names a secret, and
 * collects them in vals (if any).
 */
static void
stmt_mark(Lexer *lx, const char *to, Scratch *sc, Marks *m, Values *vals)
{
	Tok			t;
	int			chain = 0;
	int			armed = -1;		/* words since a secret's name, -1 none */
	bool		valmode = false;
	bool		after_uescape = false;

	while (lx->p < to && next_tok(lx, &t))
	{
		const char *s;
		size_t		len;
		bool		completes;
		bool		masked = false;

		if (t.type == T_SPACE)
			continue;
		s = tok_text(lx, &t, sc, &len);
		if (t.type == T_COMMENT)
		{
			/* people note old values beside new ones */
			if (valmode)
				mark_body(m, &t);
			continue;
		}
		completes = chain_feed(&chain, &t, s, len);
		if (t.type == T_STRING)
			masked = !is_secret_name(s, len) && !after_uescape;
		else if (lx->prose && t.type == T_QIDENT && !is_secret_name(s, len) &&
				 has_secret_name(s, len))
		{
			/* SQL quoted in a message whose cue we do not know */
			masked = true;
		}
		else if (valmode)
			masked = (t.type == T_WORD && !ci_equal(s, len, "default")) ||
				t.type == T_NUMBER ||
				(t.type == T_QIDENT && !is_secret_name(s, len));

		/* UESCAPE '!' holds an escape character, not a value */
		after_uescape = t.type == T_WORD && ci_equal(s, len, "uescape");
		if (completes)
			armed = 0;
		else if (!valmode && armed >= 0)
		{
			if ((t.type == T_WORD && ci_equal(s, len, "to")) ||
				(t.type == T_OP && t.len == 1 && t.start[0] == '=') ||
				(lx->prose && armed == 0 && t.type == T_OTHER && t.start[0] == ':'))
				valmode = true;
			else if (t.type == T_WORD && armed < 2)
				armed++;
			else
				armed = -1;
		}

		if (masked)
		{
			mark_body(m, &t);
			record_value(vals, s, len);
		}
	}
}

/*
 * mark_pass marks the values of every statement of text that names a
 * secret (every statement if force), read with the given quoting rules.
 */
static void
mark_pass(Marks *m, bool scs, bool prose, bool force, Scratch *sc,
		  Values *vals)
{
	Lexer		lx = {m->text, m->text, m->text + m->len, scs, prose};

	while (lx.p < lx.end)
	{
		Lexer		start = lx;

		if (stmt_scan(&lx, sc) || force)
			stmt_mark(&start, lx.p, sc, m, vals);
	}
}

/*
 * might_name is a cheap test that text cannot name a secret: every way of
 * writing the name has "mdfeed" in it or uses an escape.
 */
static bool
might_name(const char *s)
{
	size_t		len = strlen(s);

	return ci_contains(s, len, "mdfeed") || strchr(s, '\\') != NULL ||
		ci_contains(s, len, "uescape");
}

/*
 * alloc_text allocates room for len bytes and a NUL without ever raising:
 * NULL when memory runs out or the size is beyond palloc's limit.
 */
static char *
alloc_text(size_t len)
{
	if (len >= MaxAllocSize)
		return NULL;
	return palloc_extended(len + 1, MCXT_ALLOC_NO_OOM);
}

/*
 * emit_marked writes the text with every run of marked bytes replaced by
 * one mask (or, while o->buf is NULL, measures it).
 */
static void
emit_marked(const Marks *m, Out *o)
{
	size_t		i = 0;

	while (i < m->len)
	{
		size_t		j = i;

		if (m->marks[i])
		{
			while (j < m->len && m->marks[j])
				j++;
			put(o, MASK, MASK_LEN);
		}
		else
		{
			while (j < m->len && !m->marks[j])
				j++;
			put(o, m->text + i, j - i);
		}
		i = j;
	}
}

/*
 * scrub_sql returns s with the values of statements naming a secret masked,
 * NULL when nothing is to be masked; *failed when memory ran out.  With
 * standard_conforming_strings off, what either reading of '' (backslash
 * escapes or not) takes for a value is masked: the SQL is read that way,
 * but logged parameters still only double their quotes.
 */
static char *
scrub_sql(const char *s, bool prose, bool force, Values *vals, bool *failed)
{
	Marks		m;
	Scratch		sc;
	Out			o = {0};

	m.text = s;
	m.len = strlen(s);
	m.any = false;
	m.marks = (unsigned char *) alloc_text(m.len);
	if (m.marks == NULL)
	{
		*failed = true;
		return NULL;
	}
	memset(m.marks, 0, m.len);
	sc.cap = m.len;
	sc.buf = alloc_text(m.len);

	mark_pass(&m, true, prose, force, &sc, vals);
	if (!standard_conforming_strings)
		mark_pass(&m, false, prose, force, &sc, vals);
	if (m.any)
	{
		emit_marked(&m, &o);
		o.cap = o.len;
		o.buf = alloc_text(o.len);
		if (o.buf == NULL)
			*failed = true;
		else
		{
			o.len = 0;
			emit_marked(&m, &o);
			o.buf[o.len] = '\0';
		}
	}
	if (sc.buf)
		pfree(sc.buf);
	pfree(m.marks);
	return o.buf;
}

/*
 * redact_values returns s with every occurrence of the given values masked,
 * NULL when none occurs.
 */
static char *
redact_values(const char *s, const Values *vals, bool *failed)
{
	Out			o = {0};

	for (int pass = 0; pass < 2; pass++)
	{
		const char *p = s;

		while (*p)
		{
			size_t		hit = 0;

			for (int i = 0; i < vals->n && hit == 0; i++)
			{
				size_t		n = strlen(vals->v[i]);

				if (strncmp(p, vals->v[i], n) == 0)
					hit = n;
			}
			if (hit > 0)
			{
				o.changed = true;
				put(&o, MASK, MASK_LEN);
				p += hit;
			}
			else
				put(&o, p++, 1);
		}
		if (!o.changed)
			return NULL;
		if (pass == 0)
		{
			o.cap = o.len;
			o.buf = alloc_text(o.len);
			if (o.buf == NULL)
			{
				*failed = true;
				return NULL;
			}
			o.len = 0;
		}
	}
	o.buf[o.len] = '\0';
	return o.buf;
}

/*
 * mask_near masks the fragment of a syntax error message ("at or near
 * "..."", which runs to the message's last quote: the fragment itself is
 * not escaped).
 */
static char *
mask_near(const char *msg, bool *failed)
{
	const char *at = strstr(msg, " at or near \"");
	const char *last = strrchr(msg, '"');
	size_t		head;
	char	   *r;

	if (at == NULL)
		return NULL;
	head = at + strlen(" at or near \"") - msg;
	if (last < msg + head)
		return NULL;
	r = alloc_text(head + MASK_LEN + strlen(last));
	if (r == NULL)
	{
		*failed = true;
		return NULL;
	}
	memcpy(r, msg, head);
	memcpy(r + head, MASK, MASK_LEN);
	strcpy(r + head + MASK_LEN, last);
	return r;
}

/*
 * set_field replaces *field with r if there is one; when memory ran out it
 * blanks the field in place, which needs none.
 */
static void
set_field(char **field, char *r, bool failed)
{
	if (r != NULL)
		*field = r;
	else if (failed)
	{
		size_t		n = Min(strlen(*field), MASK_LEN);

		memset(*field, '*', n);
		(*field)[n] = '\0';
	}
}

/*
 * scrub_field applies the whole policy to one field of a report; force
 * scrubs it as if it named a secret.
 */
static void
scrub_field(char **field, bool prose, bool near, bool force, const Values *all)
{
	bool		failed = false;

	if (*field == NULL)
		return;
	if (near)
	{
		set_field(field, mask_near(*field, &failed), failed);
		if (failed)
			return;
	}
	if (force || might_name(*field))
	{
		set_field(field, scrub_sql(*field, prose, force, NULL, &failed), failed);
		if (failed)
			return;
	}
	if (all->n > 0)
		set_field(field, redact_values(*field, all, &failed), failed);
}

/*
 * names_secret says whether any statement of text names a secret.
 */
static bool
names_secret(const char *text)
{
	size_t		len = strlen(text);
	Scratch		sc;
	bool		names = false;

	if (!might_name(text))
		return false;
	sc.cap = len;
	sc.buf = alloc_text(len);
	for (int scs = standard_conforming_strings ? 1 : 0; scs < 2 && !names; scs++)
	{
		Lexer		lx = {text, text, text + len, scs == 1, false};

		while (lx.p < lx.end && !names)
			names = stmt_scan(&lx, &sc);
	}
	if (sc.buf)
		pfree(sc.buf);
	return names;
}

/*
 * append_statement puts the scrubbed statement where it still reaches the
 * server log, and only there: detail_log, which the log prints instead of
 * detail.
 */
static void
append_statement(ErrorData *edata, const char *stmt)
{
	static const char label[] = "Statement, with mdfeed's secrets masked: ";
	const char *base = edata->detail_log ? edata->detail_log : edata->detail;
	size_t		blen = base ? strlen(base) + 1 : 0;
	char	   *r = alloc_text(blen + strlen(label) + strlen(stmt));

	if (r == NULL)
		return;
	r[0] = '\0';
	if (base)
	{
		strcpy(r, base);
		strcat(r, "\n");
	}
	strcat(r, label);
	strcat(r, stmt);
	edata->detail_log = r;
}

/*
 * md_redact_error scrubs one report before it is logged; key and secret are
 * the current values of the settings.
 */
void
md_redact_error(ErrorData *edata, const char *key, const char *secret)
{
	Values		all = {0};
	Values		stmt_vals = {0};
	const char *stmt = debug_query_string;
	bool		stmt_names = false;
	bool		stmt_hide = false;
	char	   *stmt_scrubbed = NULL;
	bool		stmt_failed = false;
	bool		failed = false;

	if (key && strlen(key) >= MIN_CURRENT_VALUE)
		all.v[all.n++] = key;
	if (secret && strlen(secret) >= MIN_CURRENT_VALUE)
		all.v[all.n++] = secret;

	/* the statement being reported, and the internal query */
	if (stmt != NULL)
	{
		/*
		 * A statement that names a secret but has nothing to mask (SHOW,
		 * current_setting) keeps its own STATEMENT line.
		 */
		stmt_names = names_secret(stmt);
		if (stmt_names)
			stmt_scrubbed = scrub_sql(stmt, false, false, &stmt_vals, &stmt_failed);
		stmt_hide = stmt_scrubbed != NULL || stmt_failed;
		for (int i = 0; i < all.n && !stmt_hide; i++)
			stmt_hide = strstr(stmt, all.v[i]) != NULL;
	}
	if (edata->internalquery != NULL && names_secret(edata->internalquery))
	{
		stmt_names = true;
		set_field(&edata->internalquery,
				  scrub_sql(edata->internalquery, false, false, &stmt_vals, &failed),
				  failed);
		failed = false;
	}
	for (int i = 0; i < stmt_vals.n; i++)
		all.v[all.n++] = stmt_vals.v[i];

	/*
	 * Parameters of a statement that names a secret are listed in detail
	 * ("parameters: $1 = '...'") or context ("portal with parameters"),
	 * which name nothing themselves: there every literal is masked.
	 */
	scrub_field(&edata->message, true, stmt_names, false, &all);
	scrub_field(&edata->detail, true, false, stmt_names, &all);
	scrub_field(&edata->detail_log, true, false, stmt_names, &all);
	scrub_field(&edata->hint, true, false, stmt_names, &all);
	scrub_field(&edata->context, true, false, stmt_names, &all);
	scrub_field(&edata->internalquery, false, false, false, &all);

	if (stmt_hide)
	{
		bool		shown = check_log_of_query(edata);

		edata->hide_stmt = true;
		if (shown)
		{
			const char *s = stmt_scrubbed ? stmt_scrubbed : stmt;
			char	   *r;

			if (stmt_failed)
				return;			/* out of memory: keep it hidden */
			failed = false;
			r = redact_values(s, &all, &failed);
			if (failed)
				return;
			append_statement(edata, r ? r : s);
		}
	}
}

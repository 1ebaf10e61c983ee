/*-------------------------------------------------------------------------
 *
 * json.c
 *	  What every exchange adapter's parsers need from JSON: parsing a body
 *	  exactly, and reading typed fields that can be stored as they are.
 *
 * json-c's objects live in malloc'd memory: the adapters copy what they
 * keep into palloc'd memory and release the tree before returning.  None
 * of these functions raises an error, so no error path can leak a tree:
 * each returns false (or NULL) on a missing field, a wrong type or a value
 * that could not be stored.  A body that is not valid UTF-8 is refused
 * whole (JSON is UTF-8, so such a body is corrupt; json-c's own check lets
 * overlong forms, surrogates and code points past U+10FFFF through, so
 * PostgreSQL's is used), a string with a NUL byte is refused, and a string
 * cut to a length is cut between characters.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "mb/pg_wchar.h"

#include "common.h"
#include "decimal.h"
#include "json.h"

/*
 * md_json_get_ms reads a time in milliseconds since the epoch: an integer
 * from 0 to MD_JSON_MAX_MS.
 */
bool
md_json_get_ms(struct json_object *o, int64 *out)
{
	int64		v;

	if (o == NULL || !json_object_is_type(o, json_type_int))
		return false;
	errno = 0;
	v = json_object_get_int64(o);
	if (errno != 0 || v < 0 || v > MD_JSON_MAX_MS)
		return false;
	*out = v;
	return true;
}

/*
 * md_json_get_count reads a non-negative integer count.
 */
bool
md_json_get_count(struct json_object *o, int64 *out)
{
	int64		v;

	if (o == NULL || !json_object_is_type(o, json_type_int))
		return false;
	errno = 0;
	v = json_object_get_int64(o);
	if (errno != 0 || v < 0 || v == INT64_MAX)
		return false;
	*out = v;
	return true;
}

/*
 * md_json_get_cstring returns a string value that C can hold: of type string,
 * at most maxlen bytes and without a NUL byte, or NULL.
 */
const char *
md_json_get_cstring(struct json_object *o, int maxlen)
{
	const char *s;
	int			len;

	if (o == NULL || !json_object_is_type(o, json_type_string))
		return NULL;
	s = json_object_get_string(o);
	len = json_object_get_string_len(o);
	if (len > maxlen || strlen(s) != (size_t) len || !pg_verify_mbstr(PG_UTF8, s, len, true))
		return NULL;
	return s;
}

/*
 * md_clip_utf8 copies at most maxlen bytes of a UTF-8 string, never cutting
 * a character in two.
 */
char *
md_clip_utf8(const char *s, int len, int maxlen)
{
	if (len > maxlen)
		len = pg_encoding_mbcliplen(PG_UTF8, s, len, maxlen);
	return pnstrdup(s, len);
}

/*
 * md_json_get_decimal reads a decimal sent as a string, exactly as sent.
 */
bool
md_json_get_decimal(struct json_object *o, char **out)
{
	const char *s;
	int			len;

	if (o == NULL || !json_object_is_type(o, json_type_string))
		return false;
	s = json_object_get_string(o);
	len = json_object_get_string_len(o);
	if (!md_valid_decimal(s, len))
		return false;
	*out = pnstrdup(s, len);
	return true;
}

/*
 * md_json_get_number reads a decimal sent as a JSON number (or as a
 * string), exactly as written.  json-c keeps a parsed number's own text,
 * which json_object_to_json_string gives back, so 3.1e-7 stays 3.1e-7 and
 * numeric takes it as exactly 0.00000031: nothing goes through a double.
 */
bool
md_json_get_number(struct json_object *o, char **out)
{
	const char *s;
	const char *digits;

	if (o != NULL && json_object_is_type(o, json_type_string))
		return md_json_get_decimal(o, out);
	if (o == NULL || !(json_object_is_type(o, json_type_double) ||
					   json_object_is_type(o, json_type_int)))
		return false;
	s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	if (s == NULL || !md_valid_decimal(s, strlen(s)))
		return false;
	/*
	 * json-c clamps an integer beyond 64 bits to the limit, and takes
	 * leading zeros, which JSON does not allow: neither is what was sent.
	 */
	if (strcmp(s, "9223372036854775807") == 0 || strcmp(s, "-9223372036854775808") == 0 ||
		strcmp(s, "18446744073709551615") == 0)
		return false;
	digits = s + (s[0] == '-');
	if (digits[0] == '0' && digits[1] >= '0' && digits[1] <= '9')
		return false;
	*out = pstrdup(s);
	return true;
}

/*
 * md_json_error_body reads an exchange's error body, an object with an
 * integer "code" and a string message under msg_key, the message cut to
 * 500 bytes (it goes into job rows and logs).
 */
bool
md_json_error_body(const char *body, size_t len, const char *msg_key, int *code, char **msg)
{
	char	   *err;
	struct json_object *root = md_json_parse(body, len, &err);
	struct json_object *c,
			   *m;
	bool		ok = false;

	if (root == NULL)
		return false;
	if (json_object_is_type(root, json_type_object) &&
		json_object_object_get_ex(root, "code", &c) &&
		json_object_object_get_ex(root, msg_key, &m) &&
		json_object_is_type(c, json_type_int) &&
		md_json_get_cstring(m, INT_MAX) != NULL)
	{
		*code = json_object_get_int(c);
		*msg = md_clip_utf8(json_object_get_string(m), json_object_get_string_len(m), 500);
		ok = true;
	}
	json_object_put(root);
	return ok;
}

/*
 * md_json_parse parses exactly len bytes.  A truncated document is an error,
 * and so is anything after the document.
 */
struct json_object *
md_json_parse(const char *body, size_t len, char **err)
{
	struct json_tokener *tok;
	struct json_object *obj;
	enum json_tokener_error jerr;

	if (len == 0)
	{
		*err = pstrdup("empty body");
		return NULL;
	}
	if (len > INT_MAX)
	{
		*err = pstrdup("body too large");
		return NULL;
	}
	/* noError: reports, never raises; a NUL byte is invalid too */
	if (!pg_verify_mbstr(PG_UTF8, body, (int) len, true))
	{
		*err = pstrdup("body is not valid UTF-8");
		return NULL;
	}
	tok = json_tokener_new();
	if (tok == NULL)
	{
		*err = pstrdup("out of memory");
		return NULL;
	}
	/* JSON, not json-c's extensions: no comments, trailing commas, quotes */
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	obj = json_tokener_parse_ex(tok, body, (int) len);
	jerr = json_tokener_get_error(tok);
	if (obj == NULL || jerr != json_tokener_success)
	{
		if (jerr == json_tokener_continue)
			*err = pstrdup("truncated JSON");
		else
			*err = psprintf("invalid JSON: %s", json_tokener_error_desc(jerr));
		if (obj)
			json_object_put(obj);
		json_tokener_free(tok);
		return NULL;
	}
	/* only white space may follow */
	for (size_t i = json_tokener_get_parse_end(tok); i < len; i++)
	{
		if (body[i] != ' ' && body[i] != '\n' && body[i] != '\r' && body[i] != '\t')
		{
			*err = pstrdup("invalid JSON: trailing garbage");
			json_object_put(obj);
			json_tokener_free(tok);
			return NULL;
		}
	}
	json_tokener_free(tok);
	return obj;
}

/*
 * md_json_dup_string copies parent[key] if it is a string md_json_get_cstring
 * accepts.
 */
char *
md_json_dup_string(struct json_object *parent, const char *key, int maxlen)
{
	struct json_object *o;
	const char *s;

	if (!json_object_object_get_ex(parent, key, &o) || (s = md_json_get_cstring(o, maxlen)) == NULL)
		return NULL;
	return pstrdup(s);
}

/*
 * md_json_get_ms_any accepts a time as a number or as a string of digits: the
 * docs show openInterestHist's timestamp as a string, live data a number.
 */
bool
md_json_get_ms_any(struct json_object *o, int64 *out)
{
	const char *s;
	int64		v = 0;
	int			len;

	if (o != NULL && json_object_is_type(o, json_type_int))
		return md_json_get_ms(o, out);
	if (o == NULL || !json_object_is_type(o, json_type_string))
		return false;
	s = json_object_get_string(o);
	len = json_object_get_string_len(o);
	if (len == 0 || len > 15)
		return false;
	for (int i = 0; i < len; i++)
	{
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	if (v > MD_JSON_MAX_MS)
		return false;
	*out = v;
	return true;
}

/*
 * md_json_array_of_objects parses a body and checks the common shape of these answers and
 * returns the array (owned by root) or NULL with *err set.
 */
struct json_object *
md_json_array_of_objects(const char *body, size_t len, const char *what, size_t max,
					   struct json_object **root, char **err)
{
	*root = md_json_parse(body, len, err);
	if (*root == NULL)
		return NULL;
	if (!json_object_is_type(*root, json_type_array))
	{
		*err = psprintf("%s answer is not an array", what);
		json_object_put(*root);
		*root = NULL;
		return NULL;
	}
	if (json_object_array_length(*root) > max)
	{
		*err = psprintf("%s answer has more than %zu rows", what, max);
		json_object_put(*root);
		*root = NULL;
		return NULL;
	}
	return *root;
}

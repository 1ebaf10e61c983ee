/*-------------------------------------------------------------------------
 *
 * json.h
 *	  JSON helpers shared by the exchange adapters (json-c underneath).
 *
 *-------------------------------------------------------------------------
 */
#ifndef MDFEED_JSON_H
#define MDFEED_JSON_H

#include <json-c/json.h>

/* times beyond this (year 6429) are garbage, not timestamps */
#define MD_JSON_MAX_MS INT64CONST(140737488355327)

extern struct json_object *md_json_parse(const char *body, size_t len, char **err);
extern struct json_object *md_json_array_of_objects(const char *body, size_t len, const char *what,
													size_t max, struct json_object **root,
													char **err);
extern bool md_json_get_ms(struct json_object *o, int64 *out);
extern bool md_json_get_ms_any(struct json_object *o, int64 *out);
extern bool md_json_get_count(struct json_object *o, int64 *out);
extern const char *md_json_get_cstring(struct json_object *o, int maxlen);
extern char *md_json_dup_string(struct json_object *parent, const char *key, int maxlen);
extern bool md_json_get_decimal(struct json_object *o, char **out);
extern bool md_json_get_number(struct json_object *o, char **out);
extern bool md_json_error_body(const char *body, size_t len, const char *msg_key, int *code,
							   char **msg);
extern char *md_clip_utf8(const char *s, int len, int maxlen);

#endif							/* MDFEED_JSON_H */

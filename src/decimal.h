/*-------------------------------------------------------------------------
 *
 * decimal.h
 *	  Validation of the decimal strings exchanges send.
 *
 *-------------------------------------------------------------------------
 */
#ifndef MDFEED_DECIMAL_H
#define MDFEED_DECIMAL_H

extern bool md_valid_decimal(const char *s, size_t len);
extern bool md_valid_symbol(const char *s);
extern int	md_decimal_cmp(const char *a, const char *b);

#endif

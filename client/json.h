/* JSON output for --json: string escaping, the one part that is easy to
 * get wrong. */
#ifndef PINFER_CLIENT_JSON_H
#define PINFER_CLIENT_JSON_H

#include <stddef.h>
#include <stdio.h>

/* Writes s[0, n) as a quoted JSON string: '"', '\\' and control characters
 * escaped (\n, \t, ... or \u00XX). Bytes that are not well-formed UTF-8 (a
 * token piece may hold part of a character) become U+FFFD, because a JSON
 * string can only hold characters. */
void json_str(FILE *f, const char *s, size_t n);

/* json_str() of a C string; NULL writes null. */
void json_cstr(FILE *f, const char *s);

#endif

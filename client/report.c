#include "report.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void report(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("pinfer: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

const char *error_code_text(int code, char *buf, size_t size)
{
	/* The names come from the protocol's descriptor, so a code added to
	 * pinfer.proto is named without touching this file. */
	const ProtobufCEnumValue *v =
		protobuf_c_enum_descriptor_get_value(&pinfer__error_code__descriptor, code);
	if (!v || code == PINFER__ERROR_CODE__ERR_UNSPECIFIED)
		v = protobuf_c_enum_descriptor_get_value(&pinfer__error_code__descriptor,
							 PINFER__ERROR_CODE__ERR_INTERNAL);
	const char *name = v->name;
	if (!strncmp(name, "ERR_", 4))
		name += 4;
	size_t i = 0;
	for (; name[i] && i + 1 < size; i++)
		buf[i] = name[i] == '_' ? ' ' : (char)tolower((unsigned char)name[i]);
	buf[i] = '\0';
	return buf;
}

int report_daemon_error(const Pinfer__Error *e)
{
	char name[64];
	report("%s (%s)", e->message && *e->message ? e->message : "no message",
	       error_code_text(e->code, name, sizeof(name)));
	switch (e->code) {
	case PINFER__ERROR_CODE__ERR_UNSUPPORTED_VERSION:
	case PINFER__ERROR_CODE__ERR_FRAME_TOO_LARGE:
	case PINFER__ERROR_CODE__ERR_DECODE_ERROR:
	case PINFER__ERROR_CODE__ERR_HANDSHAKE_REQUIRED:
		return EXIT_PROTO;
	default:
		return EXIT_FAIL;
	}
}

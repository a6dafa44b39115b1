#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int pf_errf(struct pf_err *err, int code, const char *fmt, ...)
{
	if (err) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
		va_end(ap);
	}
	return code;
}

int pf_err_prefix(struct pf_err *err, int code, const char *fmt, ...)
{
	if (err) {
		char prefix[PF_ERR_MAX];
		char old[PF_ERR_MAX];
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(prefix, sizeof(prefix), fmt, ap);
		va_end(ap);
		memcpy(old, err->msg, sizeof(old));
		snprintf(err->msg, sizeof(err->msg), "%s: %s", prefix, old);
	}
	return code;
}

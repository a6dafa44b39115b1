/* Error reporting for libpinfer.
 *
 * Every fallible engine call returns an int: 0 (or a non-negative count) on
 * success, a negative errno-style code on failure. When the caller passes a
 * struct pf_err, the failing call fills it with a sentence that names what
 * went wrong and where (file, field, offset, expected vs found), so the daemon
 * can hand it to a client verbatim. The engine never exits or aborts on bad
 * input. */
#ifndef PINFER_ERROR_H
#define PINFER_ERROR_H

#define PF_ERR_MAX 512

struct pf_err {
	char msg[PF_ERR_MAX];
};

/* Formats the message into err (when err is non-NULL) and returns code, so a
 * failure can be reported and propagated in one statement:
 *     return pf_errf(err, -EINVAL, "%s: bad magic", path); */
int pf_errf(struct pf_err *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Prepends "prefix: " to the message already in err. Returns code. */
int pf_err_prefix(struct pf_err *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif

#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *const level_names[] = {
	[LOG_LEVEL_ERROR] = "error",
	[LOG_LEVEL_WARN] = "warn",
	[LOG_LEVEL_INFO] = "info",
	[LOG_LEVEL_DEBUG] = "debug",
};

const char *log_level_name(enum log_level level)
{
	return (unsigned)level < sizeof(level_names) / sizeof(level_names[0]) && level_names[level]
		       ? level_names[level] : "?";
}

static atomic_int max_level = LOG_LEVEL_INFO;
static atomic_bool to_journal;

static const char ellipsis[] = "…";

/* $JOURNAL_STREAM is "DEVICE:INODE" of the stream systemd connected to
 * stdout/stderr. Matching it against fd 2 tells the journal from a stderr
 * the service redirected elsewhere, or one a child merely inherited the
 * variable with. */
static bool stderr_is_journal(void)
{
	const char *stream = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	int end = 0;
	if (!stream || sscanf(stream, "%llu:%llu%n", &dev, &ino, &end) != 2 || stream[end])
		return false;
	struct stat st;
	return fstat(STDERR_FILENO, &st) == 0 && st.st_dev == dev && st.st_ino == ino;
}

void log_init(void)
{
	atomic_store(&to_journal, stderr_is_journal());
}

void log_set_level(enum log_level max)
{
	atomic_store(&max_level, max);
}

int log_level_parse(const char *name, enum log_level *out)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (level_names[i] && strcmp(name, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -EINVAL;
}

/* Writes the line's prefix into buf (of size at least 64) and returns its
 * length. */
static size_t format_prefix(char *buf, enum log_level level)
{
	if (atomic_load(&to_journal))
		return (size_t)sprintf(buf, "<%d>", (int)level);
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	localtime_r(&ts.tv_sec, &tm);
	size_t len = strftime(buf, 32, "%Y-%m-%d %H:%M:%S", &tm);
	return len + (size_t)sprintf(buf + len, ".%03ld %-5s ", ts.tv_nsec / 1000000, level_names[level]);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	if ((int)level > atomic_load_explicit(&max_level, memory_order_relaxed))
		return;
	int saved_errno = errno;

	/* The message may fill the buffer up to the last byte, which then
	 * takes the newline in place of vsnprintf's terminating NUL. */
	char line[LOG_LINE_MAX];
	size_t prefix = format_prefix(line, level);
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line + prefix, sizeof(line) - prefix, fmt, ap);
	va_end(ap);
	size_t len = prefix + (n > 0 ? (size_t)n : 0);
	if (len > sizeof(line) - 1) {
		/* Cut so that the ellipsis fits, backing up over the continuation
		 * bytes (10xxxxxx) of a character that would be split. */
		len = sizeof(line) - 1 - (sizeof(ellipsis) - 1);
		while (len > prefix && ((unsigned char)line[len] & 0xc0) == 0x80)
			len--;
		memcpy(line + len, ellipsis, sizeof(ellipsis) - 1);
		len += sizeof(ellipsis) - 1;
	}
	for (size_t i = prefix; i < len; i++) {
		if (line[i] == '\n')
			line[i] = ' ';
	}
	line[len++] = '\n';

	const char *p = line;
	while (len > 0) {
		ssize_t written = write(STDERR_FILENO, p, len);
		if (written < 0) {
			if (errno == EINTR)
				continue;
			break;  /* nowhere left to report it */
		}
		p += written;
		len -= (size_t)written;
	}
	errno = saved_errno;
}

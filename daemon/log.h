/* Leveled logging to stderr for pinferd.
 *
 * Under systemd, stderr is the journal stream that $JOURNAL_STREAM names;
 * there each line starts with its syslog priority ("<3>" for errors), which
 * journald strips and files the line under, adding its own timestamp.
 * Elsewhere a line starts with the local time in ms and the level name.
 *
 * Thread-safe. A line is built in a fixed buffer and written with one
 * write(2), so lines from different threads do not interleave; it is at
 * most LOG_LINE_MAX bytes, newline included, and a longer message is cut at
 * a UTF-8 character boundary and ends in "…". Newlines inside a message
 * become spaces, keeping one journal entry per call. errno is preserved,
 * so `log_error(...); return -errno;` works. */
#ifndef PINFER_LOG_H
#define PINFER_LOG_H

/* The syslog priorities, which the journal prefix prints as they are. Not
 * LOG_ERR and friends: <syslog.h> owns those names. */
enum log_level {
	LOG_LEVEL_ERROR = 3,
	LOG_LEVEL_WARN = 4,
	LOG_LEVEL_INFO = 6,
	LOG_LEVEL_DEBUG = 7,
};

#define LOG_LINE_MAX 1024

/* Checks whether stderr is the journal. Call at startup, and again after
 * replacing fd 2 or changing $JOURNAL_STREAM; until then lines get the
 * plain prefix. */
void log_init(void);
/* Lines of a level above max (less severe) are dropped. Default: info. */
void log_set_level(enum log_level max);
/* "error", "warn", "info" or "debug"; -EINVAL for anything else. */
int log_level_parse(const char *name, enum log_level *out);
/* The inverse: "error" ... "debug". */
const char *log_level_name(enum log_level level);

/* Use the macros below; level must be one of enum log_level. */
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__)

#endif

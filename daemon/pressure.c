/* Memory-pressure watching: one fd (PSI file, FIFO or Unix socket) on the
 * loop, and a timer that spaces the calls. See pressure.h for the
 * protocol. */
#include "pressure.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "log.h"

#define SYSTEM_PSI "/proc/pressure/memory"
/* systemd's default: "some" stall of 200 ms in a 2 s window, the shortest
 * window the kernel lets unprivileged processes use. Written with its NUL,
 * as systemd does: the kernel overwrites a trigger's last byte with one. */
#define DEFAULT_TRIGGER "some 200000 2000000"
/* Reads of a readable FIFO or socket per dispatch; the rest waits for the
 * next iteration, since the watch is level-triggered. */
#define READS_PER_DISPATCH 16

enum source_kind { SOURCE_PSI, SOURCE_FIFO, SOURCE_SOCKET };

struct pressure {
	struct loop *loop;
	pressure_fn *fn;
	void *data;
	int fd;                /* -1 once the source hung up */
	enum source_kind kind;
	int sock_type;         /* SOCK_STREAM, ... for SOURCE_SOCKET */
	uint64_t timer;        /* ends the open interval; 0 when idle */
	bool pending;          /* reported during the open interval */
	char *source;          /* for pressure_source() */
};

/* base64 (RFC 4648, standard alphabet), as systemd encodes
 * $MEMORY_PRESSURE_WRITE: whitespace is skipped and padding may be left
 * out, but anything else off the alphabet, data after padding, or leftover
 * bits that are not zero is an error. */

static int base64_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

static int base64_decode(const char *in, unsigned char **out, size_t *out_len, struct pf_err *err)
{
	*out = NULL;
	*out_len = 0;
	size_t in_len = strlen(in);
	unsigned char *buf = malloc(in_len / 4 * 3 + 3);
	if (!buf)
		return pf_errf(err, -ENOMEM, "MEMORY_PRESSURE_WRITE: out of memory");
	size_t len = 0, n_chars = 0, n_pad = 0;
	uint32_t acc = 0;
	unsigned bits = 0;
	for (size_t i = 0; i < in_len; i++) {
		char c = in[i];
		if (c == ' ' || c == '\t' || c == '\n' || c == '\r')
			continue;
		if (c == '=') {
			n_pad++;
			continue;
		}
		int v = base64_value(c);
		if (v < 0 || n_pad) {
			free(buf);
			return pf_errf(err, -EINVAL, "MEMORY_PRESSURE_WRITE: not base64 (%s at offset %zu)",
			               v < 0 ? "bad character" : "data after padding", i);
		}
		acc = (acc << 6 | (uint32_t)v) & 0xffffff;
		bits += 6;
		n_chars++;
		if (bits >= 8) {
			bits -= 8;
			buf[len++] = (unsigned char)(acc >> bits);
		}
	}
	/* One character alone carries no byte; padding completes a group of
	 * four; the bits past the last byte must be zero. */
	if (n_chars % 4 == 1 || n_pad > 2 || (n_pad && (n_chars + n_pad) % 4) ||
	    (acc & ((1u << bits) - 1))) {
		free(buf);
		return pf_errf(err, -EINVAL, "MEMORY_PRESSURE_WRITE: not base64 (bad length or padding)");
	}
	*out = buf;
	*out_len = len;
	return 0;
}

/* The trigger as text for the log: up to its first NUL, anything
 * unprintable as '?'. */
static void trigger_text(char *dst, size_t size, const unsigned char *trigger, size_t len)
{
	size_t n = 0;
	for (size_t i = 0; i < len && trigger[i] && n + 1 < size; i++)
		dst[n++] = trigger[i] >= 0x20 && trigger[i] < 0x7f ? (char)trigger[i] : '?';
	dst[n] = 0;
}

/* reporting */

static void report(struct pressure *p);

static void interval_end(struct loop *l, void *data)
{
	(void)l;
	struct pressure *p = data;
	p->timer = 0;
	if (!p->pending)
		return;
	p->pending = false;
	report(p);
}

/* Calls fn now, or once the open interval ends. Nothing touches p after
 * fn, which may close it. */
static void report(struct pressure *p)
{
	if (p->timer) {
		p->pending = true;
		return;
	}
	/* Out of memory for the timer: this call goes ahead uncoalesced. */
	p->timer = loop_timer_add(p->loop, PRESSURE_INTERVAL_MS, interval_end, p);
	p->fn(p->data);
}

static void stop_watch(struct pressure *p, const char *why)
{
	log_warn("memory pressure: %s: %s; no longer watching", p->source, why);
	loop_unwatch(p->loop, p->fd);
	close(p->fd);
	p->fd = -1;
}

static void on_ready(struct loop *l, int fd, uint32_t events, void *data)
{
	(void)l;
	struct pressure *p = data;
	bool got = false;
	const char *stop = NULL;
	char why[128];

	if (p->kind == SOURCE_PSI) {
		got = events & LOOP_PRI;
		if (events & LOOP_HUP)
			stop = "error polling the PSI file (cgroup removed?)";
	} else {
		unsigned char buf[256];
		for (int i = 0; i < READS_PER_DISPATCH; i++) {
			ssize_t n = read(fd, buf, sizeof(buf));
			if (n > 0) {
				got = true;
				continue;
			}
			if (n == 0) {
				/* A FIFO we hold open for writing never reads EOF.
				 * A zero-length datagram or packet is a report,
				 * unless the peer is gone. */
				if (p->kind == SOURCE_SOCKET &&
				    (p->sock_type == SOCK_STREAM || (events & LOOP_HUP)))
					stop = "the peer closed the connection";
				else
					got = true;
				break;
			}
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK) {
				snprintf(why, sizeof(why), "read: %s", strerror(errno));
				stop = why;
			}
			break;
		}
		if (!stop && (events & LOOP_HUP))
			stop = "hang-up";
	}
	if (stop)
		stop_watch(p, stop);
	if (got)
		report(p);
}

/* sources */

static int open_psi(struct pressure *p, const char *path, const unsigned char *trigger,
                    size_t trigger_len, struct pf_err *err)
{
	int fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return pf_errf(err, -errno, "%s: %s", p->source, strerror(errno));
	int r;
	struct statfs sfs;
	if (fstatfs(fd, &sfs) < 0) {
		r = pf_errf(err, -errno, "%s: %s", p->source, strerror(errno));
		goto fail;
	}
	/* Elsewhere a regular file never reports EPOLLPRI (epoll even refuses
	 * it), so this would watch nothing. */
	if (sfs.f_type != PROC_SUPER_MAGIC && sfs.f_type != CGROUP2_SUPER_MAGIC) {
		r = pf_errf(err, -ENOTTY, "%s: not a PSI file (neither on procfs nor on cgroupfs)",
		            p->source);
		goto fail;
	}
	/* Before watching: without a trigger a PSI file polls as an error. */
	ssize_t n = write(fd, trigger, trigger_len);
	if (n != (ssize_t)trigger_len) {
		r = pf_errf(err, n < 0 ? -errno : -EIO, "%s: writing the trigger: %s", p->source,
		            n < 0 ? strerror(errno) : "short write");
		goto fail;
	}
	r = loop_watch(p->loop, fd, LOOP_PRI, on_ready, p);
	if (r < 0) {
		pf_errf(err, r, "%s: cannot watch: %s", p->source, strerror(-r));
		goto fail;
	}
	p->fd = fd;
	p->kind = SOURCE_PSI;
	return 0;
fail:
	close(fd);
	return r;
}

static int open_fifo(struct pressure *p, const char *path, struct pf_err *err)
{
	/* Read-write: the FIFO always has a writer, so there is no hang-up
	 * when the others close, and the open does not wait for one. */
	int fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return pf_errf(err, -errno, "%s: %s", p->source, strerror(errno));
	int r = loop_watch(p->loop, fd, LOOP_READ, on_ready, p);
	if (r < 0) {
		close(fd);
		return pf_errf(err, r, "%s: cannot watch: %s", p->source, strerror(-r));
	}
	p->fd = fd;
	p->kind = SOURCE_FIFO;
	return 0;
}

/* Connects to the socket at path, of whichever type it is. A path too long
 * for sun_path is reached through /proc/self/fd. 0 or a negative errno. */
static int connect_unix(const char *path, int *fd_out, int *type_out)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int path_fd = -1;
	if (strlen(path) < sizeof(sa.sun_path)) {
		strcpy(sa.sun_path, path);
	} else {
		path_fd = open(path, O_PATH | O_CLOEXEC);
		if (path_fd < 0)
			return -errno;
		snprintf(sa.sun_path, sizeof(sa.sun_path), "/proc/self/fd/%d", path_fd);
	}
	socklen_t sa_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(sa.sun_path) + 1);
	static const int types[] = { SOCK_STREAM, SOCK_SEQPACKET, SOCK_DGRAM };
	int r = -EPROTOTYPE;
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]) && r == -EPROTOTYPE; i++) {
		int fd = socket(AF_UNIX, types[i] | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			r = -errno;
			break;
		}
		/* A datagram socket needs an address for the peer to send to:
		 * an autobound abstract one. */
		const struct sockaddr_un autobind = { .sun_family = AF_UNIX };
		if (types[i] == SOCK_DGRAM &&
		    bind(fd, (const struct sockaddr *)&autobind, sizeof(sa_family_t)) < 0) {
			r = -errno;
			close(fd);
			break;
		}
		if (connect(fd, (struct sockaddr *)&sa, sa_len) == 0) {
			*fd_out = fd;
			*type_out = types[i];
			r = 0;
			break;
		}
		/* EPROTOTYPE: the listener is of another type; try the next. */
		r = -errno;
		close(fd);
	}
	if (path_fd >= 0)
		close(path_fd);
	return r;
}

static int open_socket(struct pressure *p, const char *path, const unsigned char *msg,
                       size_t msg_len, struct pf_err *err)
{
	int fd = -1, type = 0;
	int r = connect_unix(path, &fd, &type);
	if (r < 0)
		return pf_errf(err, r, "%s: connecting: %s", p->source, strerror(-r));
	const char *type_name = type == SOCK_STREAM ? "stream" : type == SOCK_SEQPACKET ? "seqpacket" : "datagram";
	if (msg_len) {
		/* Fits: a fresh socket's buffer is far larger than any
		 * environment variable. */
		ssize_t n = send(fd, msg, msg_len, MSG_NOSIGNAL);
		if (n != (ssize_t)msg_len) {
			r = pf_errf(err, n < 0 ? -errno : -EIO, "%s: sending MEMORY_PRESSURE_WRITE: %s",
			            p->source, n < 0 ? strerror(errno) : "short write");
			close(fd);
			return r;
		}
	}
	r = loop_watch(p->loop, fd, LOOP_READ, on_ready, p);
	if (r < 0) {
		close(fd);
		return pf_errf(err, r, "%s: cannot watch: %s", p->source, strerror(-r));
	}
	char *source;
	if (asprintf(&source, "%s (%s socket)", p->source, type_name) >= 0) {
		free(p->source);
		p->source = source;
	}
	p->fd = fd;
	p->kind = SOURCE_SOCKET;
	p->sock_type = type;
	return 0;
}

/* Appends the kind of a PSI or FIFO source to its description; keeps the
 * plain one when out of memory. */
static void describe(struct pressure *p, const unsigned char *trigger, size_t trigger_len)
{
	char text[64], *source;
	int n;
	if (p->kind == SOURCE_PSI) {
		trigger_text(text, sizeof(text), trigger, trigger_len);
		n = asprintf(&source, "%s (PSI trigger \"%s\")", p->source, text);
	} else {
		n = asprintf(&source, "%s (FIFO)", p->source);
	}
	if (n >= 0) {
		free(p->source);
		p->source = source;
	}
}

static struct pressure *pressure_new(struct loop *l, pressure_fn *fn, void *data, const char *fmt,
                                     const char *arg)
{
	struct pressure *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	*p = (struct pressure){ .loop = l, .fn = fn, .data = data, .fd = -1 };
	if (asprintf(&p->source, fmt, arg) < 0) {
		free(p);
		return NULL;
	}
	return p;
}

void pressure_close(struct pressure *p)
{
	if (!p)
		return;
	if (p->fd >= 0) {
		loop_unwatch(p->loop, p->fd);
		close(p->fd);
	}
	loop_timer_cancel(p->loop, p->timer);
	free(p->source);
	free(p);
}

const char *pressure_source(const struct pressure *p)
{
	return p->source;
}

/* No $MEMORY_PRESSURE_WATCH: the system-wide PSI file, if it can be had. */
static int open_default(struct pressure **out, struct loop *l, pressure_fn *fn, void *data,
                        struct pf_err *err)
{
	struct pressure *p = pressure_new(l, fn, data, "%s", SYSTEM_PSI);
	if (!p)
		return pf_errf(err, -ENOMEM, "memory pressure: out of memory");
	struct pf_err why;
	int r = open_psi(p, SYSTEM_PSI, (const unsigned char *)DEFAULT_TRIGGER, sizeof(DEFAULT_TRIGGER), &why);
	if (r < 0) {
		pressure_close(p);
		if (r == -ENOMEM)
			return pf_errf(err, r, "%s", why.msg);
		log_info("memory pressure: not watched (MEMORY_PRESSURE_WATCH unset, and %s)", why.msg);
		return 0;
	}
	describe(p, (const unsigned char *)DEFAULT_TRIGGER, sizeof(DEFAULT_TRIGGER));
	*out = p;
	return 0;
}

int pressure_open(struct pressure **out, struct loop *l, pressure_fn *fn, void *data,
                  struct pf_err *err)
{
	*out = NULL;
	const char *watch = secure_getenv("MEMORY_PRESSURE_WATCH");
	if (!watch)
		return open_default(out, l, fn, data, err);
	if (!*watch || strcmp(watch, "/dev/null") == 0) {
		log_info("memory pressure: not watched (turned off by MEMORY_PRESSURE_WATCH=%s)", watch);
		return 0;
	}
	if (watch[0] != '/')
		return pf_errf(err, -EINVAL, "MEMORY_PRESSURE_WATCH=%s: not an absolute path", watch);

	/* Decoded whatever the source, so that a bad value is caught even
	 * where it goes unused (a FIFO). */
	unsigned char *msg = NULL;
	size_t msg_len = 0;
	const char *write_env = secure_getenv("MEMORY_PRESSURE_WRITE");
	if (write_env && *write_env) {
		int r = base64_decode(write_env, &msg, &msg_len, err);
		if (r < 0)
			return r;
	}

	struct pressure *p = pressure_new(l, fn, data, "MEMORY_PRESSURE_WATCH=%s", watch);
	if (!p) {
		free(msg);
		return pf_errf(err, -ENOMEM, "memory pressure: out of memory");
	}
	int r;
	struct stat st;
	if (stat(watch, &st) < 0) {
		r = pf_errf(err, -errno, "%s: %s", p->source, strerror(errno));
	} else if (S_ISREG(st.st_mode)) {
		/* An empty decoded trigger would leave the file without one. */
		const unsigned char *trigger = msg_len ? msg : (const unsigned char *)DEFAULT_TRIGGER;
		size_t trigger_len = msg_len ? msg_len : sizeof(DEFAULT_TRIGGER);
		r = open_psi(p, watch, trigger, trigger_len, err);
		if (r == 0)
			describe(p, trigger, trigger_len);
	} else if (S_ISFIFO(st.st_mode)) {
		r = open_fifo(p, watch, err);
		if (r == 0)
			describe(p, NULL, 0);
	} else if (S_ISSOCK(st.st_mode)) {
		r = open_socket(p, watch, msg, msg_len, err);
	} else if (S_ISDIR(st.st_mode)) {
		r = pf_errf(err, -EISDIR, "%s: is a directory", p->source);
	} else {
		r = pf_errf(err, -EINVAL, "%s: neither a PSI file, a FIFO nor a Unix socket", p->source);
	}
	free(msg);
	if (r < 0) {
		pressure_close(p);
		return r;
	}
	*out = p;
	return 0;
}

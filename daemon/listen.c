/* The listening socket: handed over by systemd (LISTEN_FDS, through
 * sd_listen_fds() unless built with WITH_SYSTEMD=0) or bound to the
 * configured path with mode 0660. A leftover socket file from a daemon that
 * died is replaced; one that a running daemon still answers on is not, and
 * neither is anything that is not a socket. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "server.h"

#if WITH_SYSTEMD
#include <systemd/sd-daemon.h>

/* The socket systemd passed into *fd, or -1 when it passed none. The
 * variables are unset so that children do not take the fd for theirs. */
static int systemd_socket(int *fd, struct pf_err *err)
{
	*fd = -1;
	int n = sd_listen_fds(1);
	if (n < 0)
		return pf_errf(err, n, "cannot take the sockets systemd passed: %s", strerror(-n));
	if (n == 0)
		return 0;
	/* One socket unit, one ListenStream: anything else is a unit file
	 * mistake that binding a path of our own would only hide. */
	if (n > 1 || sd_is_socket_unix(SD_LISTEN_FDS_START, SOCK_STREAM, 1, NULL, 0) <= 0) {
		for (int i = 0; i < n; i++)
			close(SD_LISTEN_FDS_START + i);
		return pf_errf(err, -EINVAL, "systemd passed %d sockets; expected one listening Unix "
			       "stream socket", n);
	}
	*fd = SD_LISTEN_FDS_START;
	return 0;
}
#else
#define SD_LISTEN_FDS_START 3

/* The socket systemd passed into *fd, or -1 when it passed none. The
 * variables are unset so that children do not take the fd for theirs. */
static int systemd_socket(int *fd, struct pf_err *err)
{
	const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
	*fd = -1;
	if (pid && fds && strtol(pid, NULL, 10) == (long)getpid() && strtol(fds, NULL, 10) >= 1)
		*fd = SD_LISTEN_FDS_START;
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	if (*fd >= 0 && fcntl(*fd, F_SETFD, FD_CLOEXEC) < 0) {
		*fd = -1;
		return pf_errf(err, -errno, "the socket systemd passed: %s", strerror(errno));
	}
	return 0;
}
#endif

static int set_path(struct sockaddr_un *sa, const char *path, struct pf_err *err)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sa->sun_path))
		return pf_errf(err, -ENAMETOOLONG, "socket path %s is longer than %zu bytes", path,
			       sizeof(sa->sun_path) - 1);
	memcpy(sa->sun_path, path, strlen(path) + 1);
	return 0;
}

/* Removes a stale socket file at path, refusing to touch a live one or a
 * file of another kind. */
static int clear_stale(const char *path, const struct sockaddr_un *sa, struct pf_err *err)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : pf_errf(err, -errno, "%s: %s", path, strerror(errno));
	if (!S_ISSOCK(st.st_mode))
		return pf_errf(err, -EEXIST, "%s exists and is not a socket; not replacing it", path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return pf_errf(err, -errno, "socket: %s", strerror(errno));
	int r = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
	int e = errno;
	close(fd);
	if (r == 0)
		return pf_errf(err, -EADDRINUSE, "%s: another pinferd is already listening there", path);
	if (e != ECONNREFUSED)
		return pf_errf(err, -e, "%s: cannot tell whether it is in use: %s", path, strerror(e));
	log_info("removing stale socket %s", path);
	if (unlink(path) < 0 && errno != ENOENT)
		return pf_errf(err, -errno, "%s: %s", path, strerror(errno));
	return 0;
}

int listen_open(struct server *s, struct pf_err *err)
{
	int fd;
	int r = systemd_socket(&fd, err);
	if (r)
		return r;
	if (fd >= 0) {
		/* The loop must never block in accept(). */
		int flags = fcntl(fd, F_GETFL);
		if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
			int e = errno;
			close(fd);
			return pf_errf(err, -e, "the socket systemd passed: %s", strerror(e));
		}
		s->listen_fd = fd;
		log_info("listening on the socket passed by systemd");
		return 0;
	}
	const char *path = s->cfg->socket_path;
	struct sockaddr_un sa;
	r = set_path(&sa, path, err);
	if (r || (r = clear_stale(path, &sa, err)))
		return r;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return pf_errf(err, -errno, "socket: %s", strerror(errno));
	/* The umask makes the file 0660 from the moment it exists; the chmod
	 * below only restates it. */
	mode_t old = umask(0117);
	r = bind(fd, (const struct sockaddr *)&sa, sizeof(sa));
	int e = errno;
	umask(old);
	if (r < 0) {
		close(fd);
		return pf_errf(err, -e, "cannot bind %s: %s", path, strerror(e));
	}
	s->remove_socket = true;
	if (chmod(path, 0660) < 0 || listen(fd, 64) < 0) {
		e = errno;
		close(fd);
		unlink(path);
		s->remove_socket = false;
		return pf_errf(err, -e, "cannot listen on %s: %s", path, strerror(e));
	}
	s->listen_fd = fd;
	log_info("listening on %s", path);
	return 0;
}

void listen_close(struct server *s)
{
	if (s->listen_fd < 0)
		return;
	loop_unwatch(s->loop, s->listen_fd);
	close(s->listen_fd);
	s->listen_fd = -1;
	if (s->remove_socket)
		unlink(s->cfg->socket_path);
	s->remove_socket = false;
}

#include "intr.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "report.h"

static int pipe_fds[2] = { -1, -1 };

static void on_sigint(int sig)
{
	(void)sig;
	int saved = errno;
	/* A full pipe already says "interrupted": a failed write loses
	 * nothing. */
	ssize_t w = write(pipe_fds[1], "", 1);
	(void)w;
	errno = saved;
}

int intr_install(void)
{
	if (pipe2(pipe_fds, O_NONBLOCK | O_CLOEXEC) < 0) {
		report("cannot create the signal pipe: %s", strerror(errno));
		return EXIT_FAIL;
	}
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sigint;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGINT, &sa, NULL) < 0) {
		report("cannot handle SIGINT: %s", strerror(errno));
		close(pipe_fds[0]);
		close(pipe_fds[1]);
		pipe_fds[0] = pipe_fds[1] = -1;
		return EXIT_FAIL;
	}
	return EXIT_OK;
}

int intr_fd(void)
{
	return pipe_fds[0];
}

bool intr_take(void)
{
	char drain[64];
	bool any = false;
	if (pipe_fds[0] < 0)
		return false;
	while (read(pipe_fds[0], drain, sizeof(drain)) > 0)
		any = true;
	return any;
}

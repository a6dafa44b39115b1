/* pinfer chat MODEL: a multi-turn conversation. The history lives here,
 * in the client, and every turn sends all of it as a Chat (the daemon's
 * prompt cache makes the repeated prefix cheap). Each turn opens its own
 * connection, so a session outlives pinferd's idle timeout and restarts. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "args.h"
#include "buf.h"
#include "commands.h"
#include "generate.h"
#include "intr.h"
#include "report.h"

static const char usage[] =
	"usage: pinfer chat MODEL [options]\n"
	"Chats with MODEL through its chat template. Reads one message a line from\n"
	"stdin; /clear forgets the conversation, /exit or end of input ends it.\n"
	"Ctrl-C stops the reply being written, not the session.\n"
	"\n" GEN_USAGE
	"  --system TEXT            a system message to start the conversation with\n"
	"  -v, --verbose            print timings on stderr after each reply\n";

enum { OPT_SYSTEM = OPT_GEN_END };

static const struct option long_opts[] = {
	GEN_LONG_OPTS,
	{ "system", required_argument, NULL, OPT_SYSTEM },
	COMMON_LONG_OPTS,
};

struct chat {
	struct gen_opts gen;
	const char *system;
	Pinfer__ChatMessage **msgs;  /* the history; each message and content malloc'ed */
	size_t n_msgs;
	struct buf reply;            /* the reply being received */
};

static int on_opt(void *ctx, int opt, char *arg)
{
	struct chat *chat = ctx;
	if (opt == OPT_SYSTEM) {
		chat->system = arg;
		return arg_text("--system", arg, strlen(arg));
	}
	return gen_opts_parse(&chat->gen, opt, arg);
}

/* Appends a message; content (malloc'ed) is taken over, also on failure. */
static int push(struct chat *chat, const char *role, char *content)
{
	Pinfer__ChatMessage **p = realloc(chat->msgs, (chat->n_msgs + 1) * sizeof(*p));
	Pinfer__ChatMessage *m = malloc(sizeof(*m));
	if (p)
		chat->msgs = p;
	if (!p || !m) {
		report("out of memory for the chat history");
		free(m);
		free(content);
		return EXIT_FAIL;
	}
	pinfer__chat_message__init(m);
	m->role = (char *)role;
	m->content = content;
	chat->msgs[chat->n_msgs++] = m;
	return EXIT_OK;
}

static void pop(struct chat *chat)
{
	Pinfer__ChatMessage *m = chat->msgs[--chat->n_msgs];
	free(m->content);
	free(m);
}

static int on_token(void *ctx, const Pinfer__Token *t)
{
	struct chat *chat = ctx;
	size_t n = strlen(t->text);
	if (buf_append(&chat->reply, t->text, n))
		return EXIT_FAIL;
	fwrite(t->text, 1, n, stdout);
	if (fflush(stdout) == 0 && !ferror(stdout))
		return EXIT_OK;
	report("cannot write to stdout: %s", strerror(errno));
	return EXIT_FAIL;
}

/* One turn: the history (ending with the user's message) goes out, the
 * reply streams to stdout and joins the history. A turn that fails or is
 * cancelled leaves no trace: its user message is taken back, so the next
 * turn does not answer a question twice. */
static int turn(struct global *g, struct chat *chat, const char *model)
{
	struct conn c;
	int r = conn_open(&c, g->socket);
	if (r) {
		pop(chat);
		return r;
	}
	Pinfer__Chat history = PINFER__CHAT__INIT;
	history.messages = chat->msgs;
	history.n_messages = chat->n_msgs;
	Pinfer__Generate req = PINFER__GENERATE__INIT;
	req.model = (char *)model;
	req.input_case = PINFER__GENERATE__INPUT_CHAT;
	req.chat = &history;
	gen_opts_apply(&chat->gen, &req);
	struct gen_stats st;
	r = gen_stream(&c, &req, on_token, chat, &st);
	conn_close(&c);
	if (chat->reply.len || r == EXIT_OK || r == EXIT_INTR)
		fputc('\n', stdout);
	fflush(stdout);
	if (g->verbose && st.reason != PINFER__DONE_REASON__DONE_UNSPECIFIED)
		gen_stats_print(&st);
	gen_stats_free(&st);
	if (r == EXIT_OK) {
		char *text = buf_take(&chat->reply);
		return text ? push(chat, "assistant", text) : EXIT_FAIL;
	}
	buf_free(&chat->reply);
	pop(chat);
	return r;
}

/* stdin, a line at a time, read so that Ctrl-C at the prompt is seen. */
struct lines {
	struct buf b;
	size_t start;  /* b.data[start, b.len): not returned yet */
	bool eof;
};

enum line_status { LINE_OK, LINE_EOF, LINE_INTR, LINE_ERROR };

/* The next line, without its newline, in *line (valid until the next
 * call). The last line may lack a newline. */
static enum line_status next_line(struct lines *l, char **line)
{
	for (;;) {
		char *start = l->b.data + l->start;
		char *nl = l->b.len > l->start ? memchr(start, '\n', l->b.len - l->start) : NULL;
		if (nl || (l->eof && l->b.len > l->start)) {
			char *end = nl ? nl : l->b.data + l->b.len;
			*end = '\0';
			if (end > start && end[-1] == '\r')
				end[-1] = '\0';
			l->start = (size_t)(end - l->b.data) + (nl ? 1 : 0);
			*line = start;
			return LINE_OK;
		}
		if (l->eof)
			return LINE_EOF;
		/* Keep only the unfinished line before reading more. */
		memmove(l->b.data, start, l->b.len - l->start);
		l->b.len -= l->start;
		l->start = 0;
		struct pollfd p[2] = {
			{ .fd = STDIN_FILENO, .events = POLLIN },
			{ .fd = intr_fd(), .events = POLLIN },
		};
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			report("poll: %s", strerror(errno));
			return LINE_ERROR;
		}
		if ((p[1].revents & POLLIN) && intr_take())
			return LINE_INTR;
		if (!p[0].revents)
			continue;
		char chunk[4096];
		ssize_t n = read(STDIN_FILENO, chunk, sizeof(chunk));
		if (n < 0 && errno != EINTR && errno != EAGAIN) {
			report("cannot read stdin: %s", strerror(errno));
			return LINE_ERROR;
		}
		if (n == 0)
			l->eof = true;
		else if (n > 0 && buf_append(&l->b, chunk, (size_t)n))
			return LINE_ERROR;
	}
}

static int session(struct global *g, struct chat *chat, const char *model)
{
	bool tty = isatty(STDIN_FILENO);
	struct lines in = { 0 };
	int status = EXIT_OK;
	/* The buffer must exist for next_line's pointer arithmetic. */
	if (buf_append(&in.b, "", 0))
		return EXIT_FAIL;
	for (;;) {
		if (tty) {
			fputs("> ", stdout);
			fflush(stdout);
		}
		char *line;
		enum line_status ls = next_line(&in, &line);
		if (ls == LINE_INTR && tty) {
			/* As in a shell: Ctrl-C drops the line being typed. */
			fputs("\n(/exit or Ctrl-D ends the chat)\n", stdout);
			continue;
		}
		if (ls != LINE_OK) {
			if (tty && ls == LINE_EOF)
				fputc('\n', stdout);
			if (ls == LINE_INTR)
				status = EXIT_INTR;
			else if (ls == LINE_ERROR)
				status = EXIT_FAIL;
			break;
		}
		if (!strcmp(line, "/exit"))
			break;
		if (!strcmp(line, "/clear")) {
			while (chat->n_msgs > (chat->system ? 1u : 0u))
				pop(chat);
			continue;
		}
		if (!*line || arg_text("the message", line, strlen(line)))
			continue;
		char *text = strdup(line);
		if (!text) {
			report("out of memory for the chat history");
			status = EXIT_FAIL;
			break;
		}
		if (push(chat, "user", text)) {
			status = EXIT_FAIL;
			break;
		}
		int r = turn(g, chat, model);
		/* The daemon refusing one message does not end the chat; losing
		 * the daemon does. */
		if (r == EXIT_FAIL)
			status = EXIT_FAIL;
		else if (r != EXIT_OK && r != EXIT_INTR) {
			status = r;
			break;
		}
	}
	buf_free(&in.b);
	return status;
}

int cmd_chat(struct global *g, int argc, char **argv)
{
	struct chat chat = { 0 };
	gen_opts_init(&chat.gen);
	int first, r = args_parse(g, argc, argv, ":" GEN_SHORT_OPTS COMMON_SHORT_OPTS, long_opts,
				  usage, on_opt, &chat, &first);
	if (!r)
		r = args_count(argc - first, 1, 1, usage);
	if (!r && g->json) {
		report("chat has no --json output; use pinfer run --json");
		r = EXIT_USAGE;
	}
	/* Ctrl-C must be caught from the first prompt on. */
	if (!r)
		r = intr_install();
	if (!r && chat.system) {
		char *text = strdup(chat.system);
		r = text ? push(&chat, "system", text) : EXIT_FAIL;
		if (!text)
			report("out of memory for the system message");
	}
	if (!r)
		r = session(g, &chat, argv[first]);
	while (chat.n_msgs)
		pop(&chat);
	free(chat.msgs);
	buf_free(&chat.reply);
	gen_opts_free(&chat.gen);
	return r;
}

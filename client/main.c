/* pinfer: the command-line client of pinferd. Parses the global options,
 * picks the socket and the bus, and hands the rest to a command
 * (commands.h). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "commands.h"
#include "conn.h"
#include "report.h"

static const struct command {
	const char *name;
	int (*fn)(struct global *g, int argc, char **argv);
} commands[] = {
	{ "run", cmd_run },
	{ "chat", cmd_chat },
	{ "list", cmd_list },
	{ "ps", cmd_ps },
	{ "status", cmd_status },
	{ "ping", cmd_ping },
	{ "tokenize", cmd_tokenize },
	{ "load", cmd_load },
	{ "evict", cmd_evict },
	{ "unload", cmd_evict },
};

static const char usage[] =
	"usage: pinfer [--socket PATH] [--bus BUS] [--json] [-v] COMMAND [ARGS...]\n"
	"Talks to pinferd, the inference daemon.\n"
	"\n"
	"commands:\n"
	"  run MODEL [PROMPT]      generate text, streamed to stdout\n"
	"  chat MODEL              interactive chat, history kept for the session\n"
	"  list                    models in pinferd's model directory\n"
	"  ps                      loaded models\n"
	"  status                  pinferd's version, memory and load\n"
	"  ping                    check that pinferd answers\n"
	"  tokenize MODEL [TEXT]   token ids of a text\n"
	"  load MODEL              load a model now\n"
	"  evict MODEL             unload a model\n"
	"  unload MODEL            the same as evict\n"
	"\n"
	"options:\n"
	"  --socket PATH   pinferd's socket (default: $PINFER_SOCKET, else\n"
	"                  $XDG_RUNTIME_DIR/pinferd.sock for users, /run/pinferd.sock\n"
	"                  for root)\n"
	"  --bus BUS       where load, evict and ps ask pinferd first: system,\n"
	"                  session, none (the socket only) or auto (default:\n"
	"                  $PINFER_BUS, else auto: none when a socket is named, else\n"
	"                  the bus of the default socket: system for\n"
	"                  /run/pinferd.sock, session for a user's). Without pinferd\n"
	"                  on that bus they use the socket\n"
	"  --json          machine-readable output: one JSON object per line\n"
	"  -v, --verbose   more detail (run: timings; tokenize: pieces; load, evict,\n"
	"                  ps: D-Bus or the socket, and why)\n"
	"  --version       print the version and exit\n"
	"\n"
	"'pinfer COMMAND --help' lists a command's options.\n"
	"exit status: 0 ok, 1 the request failed, 2 usage, 3 cannot connect,\n"
	"4 protocol error, 130 cancelled with Ctrl-C.\n";

enum { OPT_SOCKET = 1, OPT_VERSION, OPT_BUS };

/* --bus or $PINFER_BUS (what names it) into g->bus; "auto" follows the
 * socket: none when one was named, else the bus of the default socket.
 * EXIT_OK or EXIT_USAGE. */
static int choose_bus(struct global *g, const char *value, const char *what,
		      const char *socket)
{
	if (!strcmp(value, "system")) {
		g->bus = BUS_SYSTEM;
	} else if (!strcmp(value, "session")) {
		g->bus = BUS_SESSION;
	} else if (!strcmp(value, "none")) {
		g->bus = BUS_NONE;
	} else if (!strcmp(value, "auto")) {
		if (conn_path_named(socket))
			g->bus = BUS_NONE;
		else
			g->bus = strcmp(g->socket, CONN_SYSTEM_PATH) ? BUS_SESSION : BUS_SYSTEM;
	} else {
		report("invalid value '%s' for %s: expected system, session, none or auto", value,
		       what);
		return EXIT_USAGE;
	}
	return EXIT_OK;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, OPT_SOCKET },
		{ "version", no_argument, NULL, OPT_VERSION },
		{ "bus", required_argument, NULL, OPT_BUS },
		COMMON_LONG_OPTS,
	};
	struct global g = { 0 };
	const char *socket = NULL, *bus = NULL;
	int opt;
	/* "+": stop at the command; its options are its own. */
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "+:" COMMON_SHORT_OPTS, opts, NULL)) != -1) {
		switch (opt) {
		case OPT_SOCKET:
			socket = optarg;
			break;
		case OPT_BUS:
			bus = optarg;
			break;
		case OPT_VERSION:
			printf("pinfer %s (protocol %d.%d)\n", PINFER_CLIENT_VERSION, PROTO_MAJOR,
			       PROTO_MINOR);
			return EXIT_OK;
		case OPT_JSON:
			g.json = true;
			break;
		case 'v':
			g.verbose = true;
			break;
		case 'h':
			fputs(usage, stdout);
			return EXIT_OK;
		case ':':
			report("option '%s' needs a value", argv[optind - 1]);
			fputs(usage, stderr);
			return EXIT_USAGE;
		default:
			report("unknown option '%s'", argv[optind - 1]);
			fputs(usage, stderr);
			return EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		report("no command given");
		fputs(usage, stderr);
		return EXIT_USAGE;
	}
	g.socket = conn_default_path(socket);
	const char *bus_env = getenv("PINFER_BUS");
	int r = bus ? choose_bus(&g, bus, "--bus", socket)
		: bus_env && *bus_env ? choose_bus(&g, bus_env, "PINFER_BUS", socket)
				      : choose_bus(&g, "auto", "--bus", socket);
	if (r)
		return r;
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(argv[optind], commands[i].name))
			return commands[i].fn(&g, argc - optind, argv + optind);
	report("unknown command '%s' (see pinfer --help)", argv[optind]);
	return EXIT_USAGE;
}

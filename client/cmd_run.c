/* pinfer run MODEL [PROMPT]: one generation streamed to stdout. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "args.h"
#include "buf.h"
#include "commands.h"
#include "generate.h"
#include "json.h"
#include "report.h"

static const char usage[] =
	"usage: pinfer run MODEL [PROMPT...] [options]\n"
	"Generates text from PROMPT (the words joined by spaces; stdin when none is\n"
	"given) and streams it to stdout, followed by a newline.\n"
	"\n" GEN_USAGE
	"  --raw                    no chat template: the prompt exactly as given\n"
	"  --ids                    print the generated token ids, not the text\n"
	"  -v, --verbose            print timings on stderr\n"
	"  --json                   print one JSON object with the text and statistics\n";

enum { OPT_RAW = OPT_GEN_END, OPT_IDS };

static const struct option long_opts[] = {
	GEN_LONG_OPTS,
	{ "raw", no_argument, NULL, OPT_RAW },
	{ "ids", no_argument, NULL, OPT_IDS },
	COMMON_LONG_OPTS,
};

struct run {
	struct gen_opts gen;
	bool raw;
	bool ids;
	bool json;
	bool wrote;          /* something reached stdout */
	struct buf text;     /* --json: the text so far */
	struct buf id_list;  /* --json --ids: "1,2,3" */
};

static int on_opt(void *ctx, int opt, char *arg)
{
	struct run *run = ctx;
	switch (opt) {
	case OPT_RAW:
		run->raw = true;
		return EXIT_OK;
	case OPT_IDS:
		run->ids = true;
		return EXIT_OK;
	default:
		return gen_opts_parse(&run->gen, opt, arg);
	}
}

static int flush_stdout(void)
{
	if (fflush(stdout) == 0 && !ferror(stdout))
		return EXIT_OK;
	report("cannot write to stdout: %s", strerror(errno));
	return EXIT_FAIL;
}

static int on_token(void *ctx, const Pinfer__Token *t)
{
	struct run *run = ctx;
	if (run->json) {
		if (buf_append(&run->text, t->text, strlen(t->text)))
			return EXIT_FAIL;
		for (size_t i = 0; run->ids && i < t->n_ids; i++)
			if (buf_printf(&run->id_list, "%s%d", run->id_list.len ? "," : "", t->ids[i]))
				return EXIT_FAIL;
		return EXIT_OK;
	}
	if (run->ids) {
		for (size_t i = 0; i < t->n_ids; i++) {
			printf("%s%d", run->wrote ? " " : "", t->ids[i]);
			run->wrote = true;
		}
	} else if (*t->text) {
		fputs(t->text, stdout);
		run->wrote = true;
	}
	/* Streaming: each frame is shown as it arrives. */
	return flush_stdout();
}

static void print_json(struct run *run, const char *model, const struct gen_stats *st)
{
	fputs("{\"model\":", stdout);
	json_cstr(stdout, model);
	fputs(",\"text\":", stdout);
	json_str(stdout, buf_str(&run->text), run->text.len);
	if (run->ids)
		printf(",\"ids\":[%s]", buf_str(&run->id_list));
	fputc(',', stdout);
	gen_stats_json(stdout, st);
	fputs("}\n", stdout);
}

/* The prompt: the operands joined by spaces, or stdin when there are
 * none. An explicit "" is an empty prompt, not a request to read stdin. */
static int read_prompt(int n, char **words, struct buf *prompt)
{
	if (n == 0) {
		if (isatty(STDIN_FILENO))
			fputs("pinfer: reading the prompt from stdin; end it with Ctrl-D\n", stderr);
		return buf_read_input(prompt, stdin, "the prompt from stdin");
	}
	for (int i = 0; i < n; i++)
		if ((i && buf_append(prompt, " ", 1)) || buf_append(prompt, words[i], strlen(words[i])))
			return EXIT_FAIL;
	return EXIT_OK;
}

int cmd_run(struct global *g, int argc, char **argv)
{
	struct run run = { 0 };
	struct buf prompt = { 0 };
	struct gen_stats st = { 0 };
	struct conn c;
	bool connected = false;
	gen_opts_init(&run.gen);
	int first, r = args_parse(g, argc, argv, ":" GEN_SHORT_OPTS COMMON_SHORT_OPTS, long_opts,
				  usage, on_opt, &run, &first);
	if (!r)
		r = args_count(argc - first, 1, -1, usage);
	if (!r)
		r = read_prompt(argc - first - 1, argv + first + 1, &prompt);
	if (!r)
		r = arg_text("the prompt", buf_str(&prompt), prompt.len);
	if (!r) {
		r = conn_open(&c, g->socket);
		connected = r == EXIT_OK;
	}
	if (r)
		goto out;
	run.json = g->json;
	Pinfer__Generate req = PINFER__GENERATE__INIT;
	req.model = argv[first];
	req.input_case = PINFER__GENERATE__INPUT_PROMPT;
	req.prompt = (char *)buf_str(&prompt);
	req.raw = run.raw;
	req.return_token_ids = run.ids;
	gen_opts_apply(&run.gen, &req);
	r = gen_stream(&c, &req, on_token, &run, &st);
	/* The output ends with a newline, also after Ctrl-C or a failure
	 * mid-text, so the shell's prompt starts on a line of its own. */
	if (run.json && (r == EXIT_OK || r == EXIT_INTR))
		print_json(&run, req.model, &st);
	else if (!run.json && (r == EXIT_OK || r == EXIT_INTR || run.wrote))
		fputc('\n', stdout);
	if (flush_stdout() && !r)
		r = EXIT_FAIL;
	if (g->verbose && st.reason != PINFER__DONE_REASON__DONE_UNSPECIFIED)
		gen_stats_print(&st);
out:
	if (connected)
		conn_close(&c);
	gen_stats_free(&st);
	buf_free(&run.text);
	buf_free(&run.id_list);
	buf_free(&prompt);
	gen_opts_free(&run.gen);
	return r;
}

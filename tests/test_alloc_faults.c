/* Out of memory at every allocation (tests/alloc_wrap.h): loading
 * stories260K's GGUF; converting its llama2.c checkpoint, quantizing it
 * and packing a model (no output left behind on failure); loading and
 * running a few tokens through a bundle file under the smallest memory
 * budget and in memory, stories260K in threshold mode from a calibration
 * file and a PowerInfer-format predictor model; making a context and
 * evaluating on it, tokenizing, sampling, and a daemon request through a
 * model's scheduler (its slot, tokenizing, sampler, stop strings, output).
 *
 * Each operation runs once to count its allocations, then again with the
 * first failing, then the second, and so on to the last. Every run must
 * return an error with a message (not crash, abort or succeed as if
 * nothing happened) and give back every block, mapping, file descriptor
 * and thread it took; the wrappers' count of live blocks checks this in
 * any build, and under ASan LeakSanitizer checks it again at exit. */
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "alloc_wrap.h"
#include "commands.h"
#include "llama2c.h"
#include "quantize.h"
#include "request.h"
#include "scheduler.h"

/* One operation made whole: it frees what it made, on success too. 0 or a
 * negative errno with a sentence in err. */
typedef int (*op_fn)(struct pf_err *err);

static struct pinfer_model *stories;
static char pred_path[512], prof_path[512], pack_path[512], thr_path[512];

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	assert_non_null(d);
	int n = 0;
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

static void every_allocation(const char *name, op_fn op)
{
	struct pf_err err = { { 0 } };
	alloc_wrap_arm(0);
	int r = op(&err);
	long n = alloc_wrap_disarm();
	if (r)
		fail_msg("%s fails with no fault: %s", name, err.msg);
	long live = alloc_wrap_live(), threads = alloc_wrap_threads();
	int fds = count_fds();
	long refused = 0;
	for (long k = 1; k <= n; k++) {
		memset(&err, 0, sizeof(err));
		alloc_wrap_arm(k);
		r = op(&err);
		alloc_wrap_disarm();
		const char *what;
		if (alloc_wrap_fired(&what)) {
			if (r == 0)
				fail_msg("%s: allocation %ld of %ld (%s) failed, yet it succeeded", name, k, n, what);
			if (!err.msg[0])
				fail_msg("%s: allocation %ld of %ld (%s) failed with no message", name, k, n, what);
			refused++;
		}
		if (alloc_wrap_live() != live)
			fail_msg("%s: allocation %ld of %ld (%s) failed and %ld blocks or mappings leaked", name, k,
				 n, what, alloc_wrap_live() - live);
		if (alloc_wrap_threads() != threads)
			fail_msg("%s: allocation %ld of %ld (%s) failed and a thread was left running", name, k, n,
				 what);
		if (count_fds() != fds)
			fail_msg("%s: allocation %ld of %ld (%s) failed and a file descriptor leaked", name, k, n,
				 what);
	}
	/* a run of worker threads may allocate less; most runs must fail */
	assert_true(refused > n / 2);
	print_message("%s: %ld allocations, each failing cleanly in turn\n", name, n);
}

/* Evaluates BOS and two more tokens at once, then one more. */
static int eval_some(struct pinfer_model *m, int n_threads, struct pf_err *err)
{
	struct pinfer_ctx_params cp;
	pinfer_ctx_params_default(&cp);
	cp.n_ctx = 64;
	cp.n_threads = n_threads;
	struct pinfer_ctx *c;
	int r = pinfer_ctx_new(&c, m, &cp, err);
	if (r)
		return r;
	int32_t prompt[3] = { pinfer_token_bos(m), 3, 4 }, next = 5;
	if (!(r = pinfer_eval(c, prompt, 3, err)))
		r = pinfer_eval(c, &next, 1, err);
	pinfer_ctx_free(c);
	return r;
}

static int open_and_run(const char *path, const struct pinfer_model_params *p, struct pf_err *err)
{
	struct pinfer_model *m;
	int r = pinfer_model_open(&m, path, p, err);
	if (r)
		return r;
	r = eval_some(m, 1, err);
	pinfer_model_free(m);
	return r;
}

static int op_load_gguf(struct pf_err *err)
{
	struct pinfer_model_params p;
	pinfer_model_params_default(&p);
	struct pinfer_model *m;
	int r = pinfer_model_open(&m, shared_path("models/stories260K/stories260K.gguf"), &p, err);
	if (!r)
		pinfer_model_free(m);
	return r;
}

/* The end of an operation writing out (ending with r): a failure leaves
 * neither out nor its temporary file behind; a success's out is removed. */
static int written(const char *out, int r, struct pf_err *err)
{
	char tmp[520];
	snprintf(tmp, sizeof(tmp), "%s.tmp", out);
	if (r && (access(out, F_OK) == 0 || access(tmp, F_OK) == 0))
		fail_msg("a failed write left %s behind: %s", access(out, F_OK) ? tmp : out, err->msg);
	unlink(out);
	return r;
}

static int op_convert(struct pf_err *err)
{
	char out[512], bin[512];
	snprintf(out, sizeof(out), "%s/converted.gguf", test_dir);
	snprintf(bin, sizeof(bin), "%s", shared_path("models/stories260K/stories260K.bin"));
	struct pf_llama2c_opts o = { .type = PF_F16 };
	return written(out, pf_llama2c_convert(bin, shared_path("models/stories260K/tok512.bin"), out, &o, err),
		       err);
}

static int op_quantize(struct pf_err *err)
{
	char out[512];
	snprintf(out, sizeof(out), "%s/quantized.gguf", test_dir);
	struct quantize_opts o = { .type = PF_Q4_K, .n_threads = 2 };
	return written(out, quantize_model(shared_path("models/stories260K/stories260K.gguf"), out, &o, NULL, err),
		       err);
}

typedef int (*command_fn)(int, char **);

static int run_command(command_fn fn, int argc, const char *const *args)
{
	char *argv[32];
	for (int i = 0; i < argc; i++)
		argv[i] = (char *)args[i];
	argv[argc] = NULL;
	return fn(argc, argv);
}

/* pack says what went wrong on stderr only: err gets its exit status. */
static int op_pack(struct pf_err *err)
{
	char out[512];
	snprintf(out, sizeof(out), "%s/again.pack", test_dir);
	const char *pack[] = { "pack", "-m", pred_path, "--profile", prof_path, "-o", out };
	int status = run_command(cmd_pack, 7, pack);
	if (status)
		pf_errf(err, -EIO, "pack exited with status %d", status);
	return written(out, status ? -EIO : 0, err);
}

static int op_bundle_min_budget(struct pf_err *err)
{
	struct pinfer_model_params p;
	pinfer_model_params_default(&p);
	assert_int_equal(pinfer_memory_budget_parse("min", &p), 0);
	return open_and_run(pack_path, &p, err);
}

static int op_bundle_in_memory(struct pf_err *err)
{
	struct pinfer_model_params p;
	pinfer_model_params_default(&p);
	return open_and_run(pack_path, &p, err);
}

static int op_threshold(struct pf_err *err)
{
	struct pinfer_model_params p;
	pinfer_model_params_default(&p);
	p.sparsity = PINFER_SPARSITY_THRESHOLD;
	p.calibration = thr_path;
	return open_and_run(shared_path("models/stories260K/stories260K.gguf"), &p, err);
}

static int op_predictor(struct pf_err *err)
{
	struct pinfer_model_params p;
	pinfer_model_params_default(&p);
	p.sparsity = PINFER_SPARSITY_PREDICTOR;
	return open_and_run(pred_path, &p, err);
}

static int op_context(struct pf_err *err)
{
	return eval_some(stories, 2, err);
}

static int op_tokenize(struct pf_err *err)
{
	static const char text[] = "Once upon a time, there was a little girl named Lily. \xe2\x9c\x93 <s>";
	int32_t ids[128];
	char back[512];
	int n = pinfer_tokenize(stories, text, sizeof(text) - 1, true, true, ids, 128);
	if (n < 0)
		return pf_errf(err, n, "tokenize: %s", strerror(-n));
	int k = pinfer_detokenize(stories, ids, (size_t)n, back, sizeof(back));
	if (k < 0)
		return pf_errf(err, k, "detokenize: %s", strerror(-k));
	return 0;
}

static int op_sampler(struct pf_err *err)
{
	struct pinfer_sampler_params p;
	pinfer_sampler_params_default(&p);
	p.temp = 0.8f;
	p.top_k = 40;
	p.top_p = 0.9f;
	p.min_p = 0.05f;
	p.repeat_penalty = 1.1f;
	p.presence_penalty = 0.1f;
	p.frequency_penalty = 0.1f;
	p.seed = 7;
	enum { N_VOCAB = 512 };
	struct pinfer_sampler *s;
	int r = pinfer_sampler_new(&s, &p, N_VOCAB);
	if (r)
		return pf_errf(err, r, "sampler: %s", strerror(-r));
	float logits[N_VOCAB];
	for (int i = 0; i < N_VOCAB; i++)
		logits[i] = (float)((i * 37) % 101) / 10.0f;
	for (int i = 0; i < 4; i++)
		pinfer_sampler_accept(s, pinfer_sampler_sample(s, logits));
	pinfer_sampler_free(s);
	return 0;
}

/* The daemon's side of a Generate request once its model is loaded: the
 * event loop copies the prompt and the stop strings into a request and
 * submits it; the model's worker tokenizes it, binds it to a slot and
 * generates. */
struct waiter {
	pthread_mutex_t lock;
	pthread_cond_t cond;
};

static void on_notify(void *data, struct request *r)
{
	(void)r;
	struct waiter *w = data;
	pthread_mutex_lock(&w->lock);
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

static bool request_done(struct request *r)
{
	pthread_mutex_lock(&r->lock);
	bool done = r->done;
	pthread_mutex_unlock(&r->lock);
	return done;
}

/* Waits for r to finish; a generous bound turns a lost request into a
 * failure instead of a hung test. */
static void wait_done(struct waiter *w, struct request *r)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 120;
	pthread_mutex_lock(&w->lock);
	while (!request_done(r))
		if (pthread_cond_timedwait(&w->cond, &w->lock, &until) == ETIMEDOUT)
			fail_msg("request never finished");
	pthread_mutex_unlock(&w->lock);
}

static int op_daemon_request(struct pf_err *err)
{
	static const char prompt[] = "Once upon a time";
	struct waiter w = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER };
	struct sched_config cfg = { .n_slots = 1, .queue_max = 1, .n_ctx = 64, .n_threads = 1 };
	struct sched *s;
	int r = sched_new(&s, stories, &cfg, on_notify, &w, err);
	if (r)
		return r;
	struct request *req = request_new(1);
	if (!req) {
		sched_free(s);
		return pf_errf(err, -ENOMEM, "out of memory for the request");
	}
	struct gen_params *p = &req->params;
	p->prompt = strdup(prompt);
	p->prompt_len = sizeof(prompt) - 1;
	p->add_bos = true;
	pinfer_sampler_params_default(&p->sampling);
	p->sampling.temp = 0.5f;
	p->sampling.seed = 3;
	p->n_predict = 8;
	p->stops[0] = strdup("zebra");
	p->n_stops = p->stops[0] ? 1 : 0;
	p->return_ids = true;
	if (!p->prompt || !p->n_stops)
		r = pf_errf(err, -ENOMEM, "out of memory for the request's strings");
	else if ((r = sched_submit(s, req)))
		pf_errf(err, r, "submit: %s", strerror(-r));
	else
		wait_done(&w, req);
	sched_free(s);
	if (!r && req->reason == DONE_ERROR)
		r = pf_errf(err, -EIO, "request: %s", req->error);
	else if (!r && (req->reason != DONE_LENGTH || req->n_ids != 8))
		fail_msg("the request ended %s after %zu tokens", done_reason_name(req->reason), req->n_ids);
	request_unref(req);
	return r;
}

static void test_load_gguf(void **state)
{
	(void)state;
	every_allocation("load stories260K.gguf", op_load_gguf);
}

static void test_convert_llama2c(void **state)
{
	(void)state;
	every_allocation("convert stories260K.bin (llama2.c)", op_convert);
}

static void test_quantize(void **state)
{
	(void)state;
	every_allocation("quantize stories260K.gguf to q4_K", op_quantize);
}

static void test_pack(void **state)
{
	(void)state;
	every_allocation("pack a predictor model", op_pack);
}

static void test_bundle_min_budget(void **state)
{
	(void)state;
	every_allocation("bundle file, smallest budget", op_bundle_min_budget);
}

static void test_bundle_in_memory(void **state)
{
	(void)state;
	every_allocation("bundle file in memory", op_bundle_in_memory);
}

static void test_threshold(void **state)
{
	(void)state;
	every_allocation("stories260K in threshold mode", op_threshold);
}

static void test_predictor(void **state)
{
	(void)state;
	every_allocation("PowerInfer predictor model", op_predictor);
}

static void test_context(void **state)
{
	(void)state;
	every_allocation("context and evaluation", op_context);
}

static void test_tokenize(void **state)
{
	(void)state;
	every_allocation("tokenize and detokenize", op_tokenize);
}

static void test_sampler(void **state)
{
	(void)state;
	every_allocation("sampler", op_sampler);
}

static void test_daemon_request(void **state)
{
	(void)state;
	every_allocation("daemon request", op_daemon_request);
}

/* A small ReLU model with a predictor (PowerInfer's format) and its
 * bundle file, thresholds for stories260K, and stories260K open. */
static int setup(void **state)
{
	if (test_dir_setup(state))
		return -1;
	snprintf(pred_path, sizeof(pred_path), "%s/pred.gguf", test_dir);
	snprintf(prof_path, sizeof(prof_path), "%s/pred.prof", test_dir);
	snprintf(pack_path, sizeof(pack_path), "%s/pred.pack", test_dir);
	snprintf(thr_path, sizeof(thr_path), "%s/thr.gguf", test_dir);
	const char *synth[] = { "synth", "--dim", "128", "--ff", "384", "--layers", "2", "--heads", "4", "--type",
				"q4_0", "--act", "relu", "--sparsity", "0.9", "--predictor", "32", "-o", pred_path };
	const char *profile[] = { "profile", "-m", pred_path, "-f", shared_path("text/tinystories_val_head.txt"),
				  "--lines", "4", "-o", prof_path };
	const char *pack[] = { "pack", "-m", pred_path, "--profile", prof_path, "-o", pack_path };
	char stories_path[512];
	snprintf(stories_path, sizeof(stories_path), "%s", shared_path("models/stories260K/stories260K.gguf"));
	const char *calibrate[] = { "calibrate", "-m", stories_path, "-f", shared_path("text/tinystories_val_head.txt"),
				    "--lines", "20", "--sparsity", "0.3", "-o", thr_path };
	struct pinfer_model_params p;
	pinfer_model_params_default(&p);
	struct pf_err err;
	if (run_command(cmd_synth, 19, synth) || run_command(cmd_profile, 9, profile) ||
	    run_command(cmd_pack, 7, pack) || run_command(cmd_calibrate, 11, calibrate) ||
	    pinfer_model_open(&stories, stories_path, &p, &err))
		return -1;
	return 0;
}

static int teardown(void **state)
{
	pinfer_model_free(stories);
	return test_dir_teardown(state);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_load_gguf),
		cmocka_unit_test(test_convert_llama2c),
		cmocka_unit_test(test_quantize),
		cmocka_unit_test(test_pack),
		cmocka_unit_test(test_bundle_min_budget),
		cmocka_unit_test(test_bundle_in_memory),
		cmocka_unit_test(test_threshold),
		cmocka_unit_test(test_predictor),
		cmocka_unit_test(test_context),
		cmocka_unit_test(test_tokenize),
		cmocka_unit_test(test_sampler),
		cmocka_unit_test(test_daemon_request),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}

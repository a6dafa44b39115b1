/* pinferd's configuration: defaults, the file, flags over the file, and
 * clear errors for bad settings. */
#include "testutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "pinfer.h"

static char path[] = "/tmp/pinfer-test-config-XXXXXX";

static int write_conf(const char *text)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return -1;
	fputs(text, f);
	fclose(f);
	return 0;
}

static int load(struct config *c, struct pf_err *err, int argc, const char **argv)
{
	return config_load(c, argc, (char **)argv, err);
}

static int setup(void **state)
{
	(void)state;
	int fd = mkstemp(path);
	if (fd < 0)
		return -1;
	close(fd);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	return unlink(path);
}

static void test_file_then_flags(void **state)
{
	(void)state;
	assert_int_equal(write_conf("# pinferd settings\n"
				    "slots = 3\n"
				    "keep-alive = 10m   # ten minutes\n"
				    "memory-budget = 2G\n"
				    "kv-type = f16\n"
				    "mmap = yes\n"
				    "socket = /tmp/from-file.sock\n"
				    "\n"
				    "log-level = debug\n"), 0);
	struct config c;
	struct pf_err err;
	const char *argv[] = { "pinferd", "--config", path, "--slots", "5", NULL };
	assert_int_equal(load(&c, &err, 5, argv), 0);
	assert_int_equal(c.slots, 5);  /* the flag wins */
	assert_int_equal(c.keep_alive_ms, 600000);
	assert_int_equal(c.memory_budget, 2ull << 30);
	assert_int_equal(c.kv_type, PINFER_KV_F16);
	assert_true(c.mmap_weights);
	assert_string_equal(c.socket_path, "/tmp/from-file.sock");
	assert_int_equal(c.log_level, LOG_LEVEL_DEBUG);
	assert_int_equal(c.queue, 16);  /* untouched default */
}

static void test_bad_settings(void **state)
{
	(void)state;
	struct config c;
	struct pf_err err;
	assert_int_equal(write_conf("slots = 4\nwarp-speed = 9\n"), 0);
	const char *argv[] = { "pinferd", "--config", path, NULL };
	assert_true(load(&c, &err, 3, argv) < 0);
	assert_non_null(strstr(err.msg, ":2: unknown setting 'warp-speed'"));

	assert_int_equal(write_conf("slots = many\n"), 0);
	assert_true(load(&c, &err, 3, argv) < 0);
	assert_non_null(strstr(err.msg, ":1: bad value 'many' for slots"));

	assert_int_equal(write_conf("slots\n"), 0);
	assert_true(load(&c, &err, 3, argv) < 0);
	assert_non_null(strstr(err.msg, "expected 'key = value'"));

	const char *flag[] = { "pinferd", "--keep-alive", "5 minutes", NULL };
	assert_true(load(&c, &err, 3, flag) < 0);
	assert_non_null(strstr(err.msg, "--keep-alive"));

	const char *kv[] = { "pinferd", "--kv-type", "q4_0", NULL };
	assert_true(load(&c, &err, 3, kv) < 0);
	assert_non_null(strstr(err.msg, "--kv-type"));

	const char *mmap_flag[] = { "pinferd", "--mmap", "maybe", NULL };
	assert_true(load(&c, &err, 3, mmap_flag) < 0);
	assert_non_null(strstr(err.msg, "--mmap"));

	const char *missing[] = { "pinferd", "--config", "/nonexistent/pinferd.conf", NULL };
	assert_true(load(&c, &err, 3, missing) < 0);
	assert_non_null(strstr(err.msg, "/nonexistent/pinferd.conf"));

	const char *stray[] = { "pinferd", "extra", NULL };
	assert_true(load(&c, &err, 2, stray) < 0);
	assert_non_null(strstr(err.msg, "unexpected argument 'extra'"));
}

static void test_units(void **state)
{
	(void)state;
	int64_t ms;
	uint64_t bytes;
	assert_int_equal(config_parse_duration("250ms", &ms), 0);
	assert_int_equal(ms, 250);
	assert_int_equal(config_parse_duration("30", &ms), 0);
	assert_int_equal(ms, 30000);
	assert_int_equal(config_parse_duration("2h", &ms), 0);
	assert_int_equal(ms, 7200000);
	assert_int_equal(config_parse_duration("-1", &ms), 0);
	assert_int_equal(ms, -1);
	assert_true(config_parse_duration("5 weeks", &ms) < 0);
	assert_int_equal(pinfer_size_parse("512M", &bytes), 0);
	assert_int_equal(bytes, 512ull << 20);
	assert_int_equal(pinfer_size_parse("1.5GiB", &bytes), 0);
	assert_int_equal(bytes, 3ull << 29);
	assert_int_equal(pinfer_size_parse("4096", &bytes), 0);
	assert_int_equal(bytes, 4096);
	assert_int_equal(pinfer_size_parse("2kb", &bytes), 0);
	assert_int_equal(bytes, 2048);
	assert_int_equal(pinfer_size_parse("16T", &bytes), 0);
	assert_int_equal(bytes, 16ull << 40);
	assert_int_equal(pinfer_size_parse("100B", &bytes), 0);
	assert_int_equal(bytes, 100);
	assert_int_equal(pinfer_size_parse("18446744073709551615", &bytes), 0);
	assert_int_equal(bytes, UINT64_MAX);
	assert_int_equal(pinfer_size_parse("18446744073709551616", &bytes), -ERANGE);
	assert_int_equal(pinfer_size_parse("16777216T", &bytes), -ERANGE);
	const char *bad[] = { "", "-3K", "12Q", "nan", "inf", "0x10", " 5", "5 M", ".5G", "1.G", "1e3",
			      "5MB!", "5Mi", "5%" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		bytes = 7;
		if (pinfer_size_parse(bad[i], &bytes) != -EINVAL || bytes != 7)
			fail_msg("size \"%s\" accepted", bad[i]);
	}
	/* a memory budget takes the same sizes */
	struct pinfer_model_params p;
	pinfer_model_params_default(&p);
	assert_int_equal(pinfer_memory_budget_parse("1.5GiB", &p), 0);
	assert_int_equal(p.memory_budget, 3ull << 29);
	assert_int_equal(p.ffn_cache_percent, 0);
	assert_int_equal(pinfer_memory_budget_parse("40%ffn", &p), 0);
	assert_int_equal(p.memory_budget, 0);
	assert_int_equal(p.ffn_cache_percent, 40);
	assert_int_equal(pinfer_memory_budget_parse("none", &p), 0);
	assert_int_equal(p.ffn_cache_percent, 0);
	const char *bad_budget[] = { "0%ffn", "101%ffn", "%ffn", "1000%ffn", "-5%ffn", "5.5%ffn", "12Q" };
	for (size_t i = 0; i < sizeof(bad_budget) / sizeof(bad_budget[0]); i++)
		if (pinfer_memory_budget_parse(bad_budget[i], &p) != -EINVAL)
			fail_msg("budget \"%s\" accepted", bad_budget[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_file_then_flags),
		cmocka_unit_test(test_bad_settings),
		cmocka_unit_test(test_units),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}

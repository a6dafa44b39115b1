#include "testutil.h"

#include <math.h>
#include <string.h>

#include "pinfer.h"

#define N 8

static struct pinfer_sampler *make(struct pinfer_sampler_params *p)
{
	struct pinfer_sampler *s;
	assert_int_equal(pinfer_sampler_new(&s, p, N), 0);
	return s;
}

static void params(struct pinfer_sampler_params *p)
{
	pinfer_sampler_params_default(p);
	p->top_k = 0;
	p->top_p = 1.0f;
	p->min_p = 0.0f;
	p->temp = 1.0f;
	p->seed = 7;
}

static const float logits[N] = { 1.0f, 3.0f, 2.0f, 0.5f, -1.0f, 2.5f, 0.0f, -2.0f };

static void test_greedy(void **state)
{
	(void)state;
	struct pinfer_sampler_params p;
	params(&p);
	p.temp = 0.0f;
	struct pinfer_sampler *s = make(&p);
	assert_int_equal(pinfer_sampler_sample(s, logits), 1);
	pinfer_sampler_free(s);
}

static void test_seed_reproducible(void **state)
{
	(void)state;
	struct pinfer_sampler_params p;
	params(&p);
	int32_t a[64], b[64];
	struct pinfer_sampler *s = make(&p);
	for (int i = 0; i < 64; i++)
		a[i] = pinfer_sampler_sample(s, logits);
	pinfer_sampler_free(s);
	s = make(&p);
	for (int i = 0; i < 64; i++)
		b[i] = pinfer_sampler_sample(s, logits);
	pinfer_sampler_free(s);
	assert_memory_equal(a, b, sizeof(a));
	p.seed = 8;
	s = make(&p);
	int same = 0;
	for (int i = 0; i < 64; i++)
		same += pinfer_sampler_sample(s, logits) == a[i];
	pinfer_sampler_free(s);
	assert_true(same < 64);
}

/* With many draws the empirical frequencies follow softmax(logits / T). */
static void test_distribution(void **state)
{
	(void)state;
	struct pinfer_sampler_params p;
	params(&p);
	p.temp = 0.7f;
	struct pinfer_sampler *s = make(&p);
	int counts[N] = { 0 };
	const int draws = 200000;
	for (int i = 0; i < draws; i++)
		counts[pinfer_sampler_sample(s, logits)]++;
	pinfer_sampler_free(s);
	double z = 0.0;
	for (int i = 0; i < N; i++)
		z += exp(logits[i] / 0.7);
	for (int i = 0; i < N; i++) {
		double want = exp(logits[i] / 0.7) / z;
		double got = (double)counts[i] / draws;
		assert_true(fabs(got - want) < 0.005);
	}
}

static void draw_set(struct pinfer_sampler_params *p, bool seen[N])
{
	struct pinfer_sampler *s = make(p);
	memset(seen, 0, N * sizeof(bool));
	for (int i = 0; i < 5000; i++)
		seen[pinfer_sampler_sample(s, logits)] = true;
	pinfer_sampler_free(s);
}

static void test_top_k(void **state)
{
	(void)state;
	struct pinfer_sampler_params p;
	params(&p);
	p.top_k = 3;
	bool seen[N];
	draw_set(&p, seen);
	/* the three largest logits are ids 1, 5, 2 */
	for (int i = 0; i < N; i++)
		assert_int_equal(seen[i], i == 1 || i == 5 || i == 2);
}

static void test_top_p(void **state)
{
	(void)state;
	struct pinfer_sampler_params p;
	params(&p);
	/* softmax: p(1)=.41 p(5)=.25 p(2)=.15 ...: 0.6 needs ids 1 and 5 */
	p.top_p = 0.6f;
	bool seen[N];
	draw_set(&p, seen);
	for (int i = 0; i < N; i++)
		assert_int_equal(seen[i], i == 1 || i == 5);
}

static void test_min_p(void **state)
{
	(void)state;
	struct pinfer_sampler_params p;
	params(&p);
	/* keeps logits >= 3 + ln(0.3) = 1.796: ids 1, 5, 2 */
	p.min_p = 0.3f;
	bool seen[N];
	draw_set(&p, seen);
	for (int i = 0; i < N; i++)
		assert_int_equal(seen[i], i == 1 || i == 5 || i == 2);
}

static void test_penalties(void **state)
{
	(void)state;
	struct pinfer_sampler_params p;
	params(&p);
	p.temp = 0.0f;
	p.repeat_penalty = 2.0f;  /* 3.0 -> 1.5: id 5 (2.5) wins */
	struct pinfer_sampler *s = make(&p);
	pinfer_sampler_accept(s, 1);
	assert_int_equal(pinfer_sampler_sample(s, logits), 5);
	pinfer_sampler_free(s);

	params(&p);
	p.temp = 0.0f;
	p.frequency_penalty = 0.4f;  /* id 1 seen twice: 3.0 - 0.8 = 2.2 < 2.5 */
	s = make(&p);
	pinfer_sampler_accept(s, 1);
	pinfer_sampler_accept(s, 1);
	assert_int_equal(pinfer_sampler_sample(s, logits), 5);
	pinfer_sampler_free(s);

	params(&p);
	p.temp = 0.0f;
	p.presence_penalty = 0.4f;  /* once or twice, same: 2.6 > 2.5 */
	s = make(&p);
	pinfer_sampler_accept(s, 1);
	pinfer_sampler_accept(s, 1);
	assert_int_equal(pinfer_sampler_sample(s, logits), 1);
	pinfer_sampler_free(s);

	params(&p);
	p.temp = 0.0f;
	p.repeat_penalty = 2.0f;
	p.repeat_last_n = 2;  /* id 1 falls out of the window */
	s = make(&p);
	pinfer_sampler_accept(s, 1);
	pinfer_sampler_accept(s, 3);
	pinfer_sampler_accept(s, 4);
	assert_int_equal(pinfer_sampler_sample(s, logits), 1);
	pinfer_sampler_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_greedy),
		cmocka_unit_test(test_seed_reproducible),
		cmocka_unit_test(test_distribution),
		cmocka_unit_test(test_top_k),
		cmocka_unit_test(test_top_p),
		cmocka_unit_test(test_min_p),
		cmocka_unit_test(test_penalties),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

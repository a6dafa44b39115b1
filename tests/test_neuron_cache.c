/* The neuron cache (engine/neuron_cache.h): hits and misses, least recently
 * used eviction, pinned and in-use entries kept, capacity changes that keep
 * pinned contents and give pages back, and a random workload checked
 * against a simple model of what must be cached. */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "neuron_cache.h"

#define PAGE 4096

static void fill(uint8_t *p, int64_t key)
{
	memset(p, (int)(key & 0xff), PAGE);
	memcpy(p, &key, sizeof(key));
}

static bool holds(const uint8_t *p, int64_t key)
{
	int64_t k;
	memcpy(&k, p, sizeof(k));
	return k == key && p[PAGE - 1] == (uint8_t)(key & 0xff);
}

static void test_lru(void **state)
{
	(void)state;
	struct pf_neuron_cache c;
	assert_int_equal(pf_ncache_init(&c, PAGE, 8, 3, 100), 0);
	for (int64_t k = 0; k < 3; k++) {
		assert_null(pf_ncache_get(&c, k));
		fill(pf_ncache_put(&c, k, false), k);
	}
	pf_ncache_begin_step(&c);
	/* 0 becomes the newest, so 1 is the oldest and goes first */
	assert_true(holds(pf_ncache_get(&c, 0), 0));
	pf_ncache_begin_step(&c);
	fill(pf_ncache_put(&c, 3, false), 3);
	assert_null(pf_ncache_get(&c, 1));
	assert_true(holds(pf_ncache_get(&c, 2), 2));
	assert_true(holds(pf_ncache_get(&c, 0), 0));
	assert_true(holds(pf_ncache_get(&c, 3), 3));
	assert_int_equal(c.evictions, 1);
	assert_int_equal(c.hits, 4);
	assert_int_equal(c.misses, 4);
	assert_int_equal(pf_ncache_count(&c), 3);
	pf_ncache_free(&c);
}

static void test_pinned_and_in_use(void **state)
{
	(void)state;
	struct pf_neuron_cache c;
	assert_int_equal(pf_ncache_init(&c, PAGE, 4, 3, 100), 0);
	fill(pf_ncache_put(&c, 10, true), 10);
	fill(pf_ncache_put(&c, 11, false), 11);
	fill(pf_ncache_put(&c, 12, false), 12);
	/* all three were used in this step: nothing can be evicted */
	assert_null(pf_ncache_put(&c, 13, false));
	pf_ncache_begin_step(&c);
	assert_true(holds(pf_ncache_get(&c, 11), 11));
	/* 12 is the only entry neither pinned nor used in this step */
	fill(pf_ncache_put(&c, 13, false), 13);
	assert_null(pf_ncache_get(&c, 12));
	assert_null(pf_ncache_put(&c, 14, false));
	for (int64_t k = 14; k < 30; k++) {
		pf_ncache_begin_step(&c);
		fill(pf_ncache_put(&c, k, false), k);
	}
	assert_true(holds(pf_ncache_get(&c, 10), 10));
	/* unpinned, it becomes the newest entry and then ages like any other */
	pf_ncache_pin(&c, 10, false);
	pf_ncache_begin_step(&c);
	fill(pf_ncache_put(&c, 30, false), 30);
	fill(pf_ncache_put(&c, 31, false), 31);
	assert_true(holds(pf_ncache_get(&c, 10), 10));
	pf_ncache_begin_step(&c);
	fill(pf_ncache_put(&c, 32, false), 32);
	fill(pf_ncache_put(&c, 33, false), 33);
	fill(pf_ncache_put(&c, 34, false), 34);
	assert_null(pf_ncache_get(&c, 10));
	/* a failed fill is forgotten and its slot reused */
	pf_ncache_drop(&c, 34);
	assert_null(pf_ncache_get(&c, 34));
	assert_non_null(pf_ncache_put(&c, 35, false));
	assert_true(holds(pf_ncache_get(&c, 33), 33));
	pf_ncache_free(&c);
}

static void test_resize(void **state)
{
	(void)state;
	struct pf_neuron_cache c;
	assert_int_equal(pf_ncache_init(&c, PAGE, 16, 16, 100), 0);
	for (int64_t k = 0; k < 16; k++)
		fill(pf_ncache_put(&c, k, k % 4 == 0), k);
	pf_ncache_begin_step(&c);
	/* 4 pinned (0, 4, 8, 12) survive the move into 6 slots; 2 others fit */
	pf_ncache_resize(&c, 6);
	assert_int_equal(c.n_slots, 6);
	for (int64_t k = 0; k < 16; k += 4)
		assert_true(holds(pf_ncache_get(&c, k), k));
	assert_true(pf_ncache_count(&c) <= 6);
	int unpinned = 0;
	for (int64_t k = 0; k < 16; k++)
		if (k % 4) {
			const uint8_t *p = pf_ncache_get(&c, k);
			if (p) {
				assert_true(holds(p, k));
				unpinned++;
			}
		}
	assert_true(unpinned <= 2);
	/* fewer slots than pinned entries: as many as fit stay */
	pf_ncache_begin_step(&c);
	pf_ncache_resize(&c, 2);
	int kept = 0;
	for (int64_t k = 0; k < 16; k += 4) {
		const uint8_t *p = pf_ncache_get(&c, k);
		if (p) {
			assert_true(holds(p, k));
			kept++;
		}
	}
	assert_int_equal(kept, 2);
	/* growing again gives free slots */
	pf_ncache_begin_step(&c);
	pf_ncache_resize(&c, 16);
	for (int64_t k = 50; k < 64; k++)
		fill(pf_ncache_put(&c, k, false), k);
	assert_int_equal(pf_ncache_count(&c), 16);
	pf_ncache_free(&c);
}

/* Random gets and puts against a model: every key put since it was last
 * evicted is either cached with its contents or was evicted (counted);
 * pinned keys are always cached; the count never exceeds the capacity and
 * is the number of occupied slots. */
static void test_random(void **state)
{
	(void)state;
	enum { KEYS = 500, SLOTS = 64 };
	struct pf_neuron_cache c;
	assert_int_equal(pf_ncache_init(&c, PAGE, SLOTS, 40, KEYS), 0);
	uint64_t rng = 42;
	bool pinned[KEYS] = { 0 };
	int n_pinned = 0;
	for (int step = 0; step < 2000; step++) {
		pf_ncache_begin_step(&c);
		if (step % 400 == 399)
			pf_ncache_resize(&c, 10 + (int32_t)(test_rand(&rng) % (SLOTS - 10)));
		for (int i = 0; i < 5; i++) {
			int64_t k = (int64_t)(test_rand(&rng) % KEYS);
			uint8_t *p = pf_ncache_get(&c, k);
			if (p) {
				assert_true(holds(p, k));
				continue;
			}
			assert_false(pinned[k] && c.n_slots >= n_pinned);
			bool pin = n_pinned < 8 && test_rand(&rng) % 10 == 0;
			p = pf_ncache_put(&c, k, pin);
			if (!p)
				continue;
			fill(p, k);
			if (pin) {
				pinned[k] = true;
				n_pinned++;
			}
		}
		assert_true(pf_ncache_count(&c) <= c.n_slots);
		int32_t cached = 0;
		for (int32_t sl = 0; sl < c.max_slots; sl++)
			cached += c.key_of[sl] >= 0;
		assert_int_equal(pf_ncache_count(&c), cached);
		for (int64_t k = 0; k < KEYS; k++)
			if (pinned[k] && c.n_slots >= n_pinned && !pf_ncache_get(&c, k))
				fail_msg("step %d: pinned key %lld lost", step, (long long)k);
	}
	pf_ncache_free(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lru),
		cmocka_unit_test(test_pinned_and_in_use),
		cmocka_unit_test(test_resize),
		cmocka_unit_test(test_random),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Token sampling. The chain runs in llama.cpp's order so the same flags mean
 * the same thing: penalties, top-k, top-p, min-p, temperature, then a draw
 * from the remaining distribution. Temperature <= 0 is greedy (after
 * penalties). */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "pinfer.h"

struct cand {
	int32_t id;
	float logit;
	float p;
};

struct pinfer_sampler {
	struct pinfer_sampler_params params;
	int n_vocab;
	uint64_t rng[4];
	struct cand *cands;
	int32_t *history;  /* ring of the last repeat_last_n accepted tokens */
	int n_history, history_head;
	uint16_t *counts;  /* scratch: occurrences per id in the history */
};

void pinfer_sampler_params_default(struct pinfer_sampler_params *p)
{
	memset(p, 0, sizeof(*p));
	p->temp = 0.8f;
	p->top_k = 40;
	p->top_p = 0.95f;
	p->min_p = 0.05f;
	p->repeat_penalty = 1.0f;
	p->repeat_last_n = 64;
	p->seed = PINFER_SEED_RANDOM;
}

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

/* xoshiro256** */
static uint64_t next_u64(struct pinfer_sampler *s)
{
	uint64_t *r = s->rng;
	uint64_t result = rotl(r[1] * 5, 7) * 9;
	uint64_t t = r[1] << 17;
	r[2] ^= r[0];
	r[3] ^= r[1];
	r[1] ^= r[2];
	r[0] ^= r[3];
	r[2] ^= t;
	r[3] = rotl(r[3], 45);
	return result;
}

static double next_unit(struct pinfer_sampler *s)
{
	return (double)(next_u64(s) >> 11) * (1.0 / 9007199254740992.0);
}

int pinfer_sampler_new(struct pinfer_sampler **out, const struct pinfer_sampler_params *p,
		       int n_vocab)
{
	*out = NULL;
	if (n_vocab <= 0 || n_vocab > 65535 * 64)
		return -EINVAL;
	struct pinfer_sampler *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	if (p)
		s->params = *p;
	else
		pinfer_sampler_params_default(&s->params);
	if (s->params.repeat_last_n < 0)
		s->params.repeat_last_n = 0;
	s->n_vocab = n_vocab;
	s->cands = malloc((size_t)n_vocab * sizeof(*s->cands));
	s->history = malloc(((size_t)s->params.repeat_last_n + 1) * sizeof(*s->history));
	s->counts = calloc((size_t)n_vocab, sizeof(*s->counts));
	if (!s->cands || !s->history || !s->counts) {
		pinfer_sampler_free(s);
		return -ENOMEM;
	}
	uint64_t seed = s->params.seed;
	if (seed == PINFER_SEED_RANDOM && getrandom(&seed, sizeof(seed), 0) != sizeof(seed))
		seed = (uint64_t)time(NULL);
	for (int i = 0; i < 4; i++)
		s->rng[i] = splitmix64(&seed);
	*out = s;
	return 0;
}

void pinfer_sampler_free(struct pinfer_sampler *s)
{
	if (!s)
		return;
	free(s->cands);
	free(s->history);
	free(s->counts);
	free(s);
}

void pinfer_sampler_accept(struct pinfer_sampler *s, int32_t id)
{
	int cap = s->params.repeat_last_n;
	if (cap == 0 || id < 0 || id >= s->n_vocab)
		return;
	s->history[s->history_head] = id;
	s->history_head = (s->history_head + 1) % cap;
	if (s->n_history < cap)
		s->n_history++;
}

static void apply_penalties(struct pinfer_sampler *s)
{
	const struct pinfer_sampler_params *p = &s->params;
	if (s->n_history == 0 ||
	    (p->repeat_penalty == 1.0f && p->presence_penalty == 0.0f && p->frequency_penalty == 0.0f))
		return;
	for (int i = 0; i < s->n_history; i++)
		s->counts[s->history[i]]++;
	for (int i = 0; i < s->n_history; i++) {
		int32_t id = s->history[i];
		int n = s->counts[id];
		if (n == 0)
			continue;  /* already penalised */
		float *l = &s->cands[id].logit;
		if (p->repeat_penalty != 1.0f && p->repeat_penalty > 0.0f)
			*l = *l > 0.0f ? *l / p->repeat_penalty : *l * p->repeat_penalty;
		*l -= (float)n * p->frequency_penalty + p->presence_penalty;
		s->counts[id] = 0;
	}
}

static int by_logit_desc(const void *a, const void *b)
{
	float x = ((const struct cand *)a)->logit, y = ((const struct cand *)b)->logit;
	return x < y ? 1 : x > y ? -1 : 0;
}

/* Moves the k best candidates to the front, sorted. Full sort when k >= n;
 * otherwise a quickselect-style partition first keeps it near O(n). */
static void keep_top(struct cand *c, int n, int k)
{
	if (k < n) {
		int lo = 0, hi = n - 1;
		while (lo < hi) {
			float pivot = c[(lo + hi) / 2].logit;
			int i = lo, j = hi;
			while (i <= j) {
				while (c[i].logit > pivot)
					i++;
				while (c[j].logit < pivot)
					j--;
				if (i <= j) {
					struct cand t = c[i];
					c[i++] = c[j];
					c[j--] = t;
				}
			}
			if (k - 1 <= j)
				hi = j;
			else if (k - 1 >= i)
				lo = i;
			else
				break;
		}
		n = k;
	}
	qsort(c, (size_t)n, sizeof(*c), by_logit_desc);
}

/* Probabilities of the first n (sorted) candidates at temperature t. */
static void softmax_cands(struct cand *c, int n, float t)
{
	double sum = 0.0;
	for (int i = 0; i < n; i++) {
		c[i].p = expf((c[i].logit - c[0].logit) / t);
		sum += c[i].p;
	}
	for (int i = 0; i < n; i++)
		c[i].p = (float)(c[i].p / sum);
}

int32_t pinfer_sampler_sample(struct pinfer_sampler *s, const float *logits)
{
	const struct pinfer_sampler_params *p = &s->params;
	int n = s->n_vocab;
	for (int i = 0; i < n; i++)
		s->cands[i] = (struct cand){ i, logits[i], 0.0f };
	apply_penalties(s);
	struct cand *c = s->cands;
	if (p->temp <= 0.0f) {
		int best = 0;
		for (int i = 1; i < n; i++)
			if (c[i].logit > c[best].logit)
				best = i;
		return c[best].id;
	}
	keep_top(c, n, p->top_k > 0 && p->top_k < n ? p->top_k : n);
	if (p->top_k > 0 && p->top_k < n)
		n = p->top_k;
	if (p->top_p < 1.0f) {
		softmax_cands(c, n, 1.0f);
		double cum = 0.0;
		for (int i = 0; i < n; i++) {
			cum += c[i].p;
			if (cum >= p->top_p) {
				n = i + 1;
				break;
			}
		}
	}
	if (p->min_p > 0.0f) {
		/* p_i >= min_p * p_max  <=>  logit_i >= logit_max + log(min_p) */
		float floor = c[0].logit + logf(p->min_p);
		int keep = 1;
		while (keep < n && c[keep].logit >= floor)
			keep++;
		n = keep;
	}
	softmax_cands(c, n, p->temp);
	double u = next_unit(s), cum = 0.0;
	for (int i = 0; i < n; i++) {
		cum += c[i].p;
		if (u < cum)
			return c[i].id;
	}
	return c[n - 1].id;
}

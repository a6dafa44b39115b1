#include "ops.h"

#include <math.h>

void pf_rmsnorm(float *out, const float *x, const float *weight, int n, float eps)
{
	float ss = 0.0f;
	for (int i = 0; i < n; i++)
		ss += x[i] * x[i];
	float scale = 1.0f / sqrtf(ss / (float)n + eps);
	for (int i = 0; i < n; i++)
		out[i] = weight[i] * (scale * x[i]);
}

void pf_softmax(float *x, int n)
{
	float max = x[0];
	for (int i = 1; i < n; i++)
		if (x[i] > max)
			max = x[i];
	float sum = 0.0f;
	for (int i = 0; i < n; i++) {
		x[i] = expf(x[i] - max);
		sum += x[i];
	}
	float inv = 1.0f / sum;
	for (int i = 0; i < n; i++)
		x[i] *= inv;
}

void pf_rope_angles(float *cs, int pos, int rope_dim, float freq_base)
{
	for (int i = 0; i < rope_dim / 2; i++) {
		float theta = 1.0f / powf(freq_base, (float)(2 * i) / (float)rope_dim);
		float a = (float)pos * theta;
		cs[2 * i] = cosf(a);
		cs[2 * i + 1] = sinf(a);
	}
}

void pf_rope(float *x, int n_heads, int head_dim, int rope_dim, const float *cs,
	     enum pinfer_rope_type type)
{
	int half = rope_dim / 2;
	for (int h = 0; h < n_heads; h++) {
		float *v = x + (int64_t)h * head_dim;
		for (int i = 0; i < half; i++) {
			int a = type == PINFER_ROPE_NEOX ? i : 2 * i;
			int b = type == PINFER_ROPE_NEOX ? i + half : 2 * i + 1;
			float c = cs[2 * i], s = cs[2 * i + 1];
			float v0 = v[a], v1 = v[b];
			v[a] = v0 * c - v1 * s;
			v[b] = v0 * s + v1 * c;
		}
	}
}

void pf_ffn_act(float *gate, const float *up, int64_t n, enum pinfer_ffn_act act)
{
	switch (act) {
	case PINFER_ACT_RELU:
		for (int64_t i = 0; i < n; i++)
			gate[i] = gate[i] > 0.0f ? gate[i] * up[i] : 0.0f;
		break;
	case PINFER_ACT_DRELU:
		for (int64_t i = 0; i < n; i++)
			gate[i] = gate[i] > 0.0f && up[i] > 0.0f ? gate[i] * up[i] : 0.0f;
		break;
	default:
		for (int64_t i = 0; i < n; i++)
			gate[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
		break;
	}
}

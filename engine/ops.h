/* The small vector operations of the forward pass. */
#ifndef PINFER_OPS_H
#define PINFER_OPS_H

#include <stdint.h>

#include "pinfer.h"

/* out = x / rms(x) * weight */
void pf_rmsnorm(float *out, const float *x, const float *weight, int n, float eps);

/* In place over n floats. */
void pf_softmax(float *x, int n);

/* Rotates the first rope_dim dims of each of n_heads heads (head_dim apart)
 * by the angles whose cos/sin are in cs (rope_dim/2 pairs of cos, sin). */
void pf_rope(float *x, int n_heads, int head_dim, int rope_dim, const float *cs,
	     enum pinfer_rope_type type);

/* cs[2i] = cos(pos * theta_i), cs[2i+1] = sin(...), theta_i = base^(-2i/rope_dim) */
void pf_rope_angles(float *cs, int pos, int rope_dim, float freq_base);

/* gate[i] = act(gate[i]) * up[i] (dReLU applies ReLU to up too). */
void pf_ffn_act(float *gate, const float *up, int64_t n, enum pinfer_ffn_act act);

#endif

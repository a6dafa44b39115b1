/* pinfer-model bench --kernels: matrix products alone, per weight format
 * and batch size, by both prefill methods, to show where each wins. */
#ifndef PINFER_TOOLS_BENCH_KERNELS_H
#define PINFER_TOOLS_BENCH_KERNELS_H

int bench_kernels(int n_threads);

#endif

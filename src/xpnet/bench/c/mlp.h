/* mlp.h: a small generic multilayer perceptron in C, in the style of nn.h.
 *
 * Layer sizes are given at run time, every array is allocated once, and the
 * loops are general (no size is known to the compiler). Sigmoid units, mean
 * squared error, plain gradient descent; gradients by backprop or by finite
 * differences. One sample at a time, as nn.h does.
 *
 * W of layer l has shape (sizes[l], sizes[l+1]), row-major, as xpnet's W:
 * z = a W + b.
 */
#ifndef MLP_H
#define MLP_H

#include <tgmath.h>  /* exp() of a float is expf() */
#include <stdlib.h>
#include <string.h>

#ifndef REAL
#define REAL float
#endif
typedef REAL real;

typedef struct {
    size_t rows, cols;
    real *es;
} Mat;

#define MAT_AT(m, i, j) ((m).es[(i) * (m).cols + (j)])

typedef struct {
    size_t count;   /* layers with weights */
    size_t *sizes;  /* count + 1 widths */
    Mat *ws, *bs;   /* ws[l]: sizes[l] x sizes[l+1]; bs[l]: 1 x sizes[l+1] */
    Mat *as;        /* as[0]: the input row; as[l+1]: activations of layer l */
    Mat *es;        /* es[l]: dC/d as[l] during backprop */
} MLP;

static Mat mat_alloc(size_t rows, size_t cols)
{
    Mat m = {rows, cols, calloc(rows * cols, sizeof(real))};
    if (m.es == NULL) abort();
    return m;
}

static MLP mlp_alloc(const size_t *sizes, size_t count)
{
    MLP nn;
    nn.count = count;
    nn.sizes = malloc((count + 1) * sizeof(size_t));
    nn.ws = malloc(count * sizeof(Mat));
    nn.bs = malloc(count * sizeof(Mat));
    nn.as = malloc((count + 1) * sizeof(Mat));
    nn.es = malloc((count + 1) * sizeof(Mat));
    if (!nn.sizes || !nn.ws || !nn.bs || !nn.as || !nn.es) abort();
    memcpy(nn.sizes, sizes, (count + 1) * sizeof(size_t));
    for (size_t l = 0; l <= count; l++) {
        nn.as[l] = mat_alloc(1, sizes[l]);
        nn.es[l] = mat_alloc(1, sizes[l]);
    }
    for (size_t l = 0; l < count; l++) {
        nn.ws[l] = mat_alloc(sizes[l], sizes[l + 1]);
        nn.bs[l] = mat_alloc(1, sizes[l + 1]);
    }
    return nn;
}

static real sigmoid(real z)
{
    return (real)1 / ((real)1 + exp(-z));
}

/* The parameters as one list of arrays: W1, b1, W2, b2, ... (xpnet's order). */
static size_t mlp_param_arrays(MLP nn, Mat *out)
{
    for (size_t l = 0; l < nn.count; l++) {
        out[2 * l] = nn.ws[l];
        out[2 * l + 1] = nn.bs[l];
    }
    return 2 * nn.count;
}

static void mlp_forward(MLP nn)
{
    for (size_t l = 0; l < nn.count; l++) {
        Mat a = nn.as[l], w = nn.ws[l], b = nn.bs[l], out = nn.as[l + 1];
        for (size_t j = 0; j < out.cols; j++) {
            real z = b.es[j];
            for (size_t i = 0; i < a.cols; i++) z += a.es[i] * MAT_AT(w, i, j);
            out.es[j] = sigmoid(z);
        }
    }
}

/* Mean squared error over every sample and output. */
static real mlp_cost(MLP nn, const real *X, const real *Y, size_t n)
{
    size_t n_in = nn.sizes[0], n_out = nn.sizes[nn.count];
    real total = 0;
    for (size_t s = 0; s < n; s++) {
        memcpy(nn.as[0].es, X + s * n_in, n_in * sizeof(real));
        mlp_forward(nn);
        for (size_t j = 0; j < n_out; j++) {
            real d = nn.as[nn.count].es[j] - Y[s * n_out + j];
            total += d * d;
        }
    }
    return total / (real)(n * n_out);
}

static void mlp_zero(MLP g)
{
    for (size_t l = 0; l < g.count; l++) {
        memset(g.ws[l].es, 0, g.ws[l].rows * g.ws[l].cols * sizeof(real));
        memset(g.bs[l].es, 0, g.bs[l].cols * sizeof(real));
    }
}

/* Gradients of the mean cost into g (same shape as nn), one sample at a time. */
static void mlp_backprop(MLP nn, MLP g, const real *X, const real *Y, size_t n)
{
    size_t n_in = nn.sizes[0], n_out = nn.sizes[nn.count];
    real scale = (real)2 / (real)(n * n_out);
    mlp_zero(g);
    for (size_t s = 0; s < n; s++) {
        memcpy(nn.as[0].es, X + s * n_in, n_in * sizeof(real));
        mlp_forward(nn);
        for (size_t j = 0; j < n_out; j++)  /* BP1 starts from dC/da of the output */
            nn.es[nn.count].es[j] = scale * (nn.as[nn.count].es[j] - Y[s * n_out + j]);
        for (size_t l = nn.count; l-- > 0;) {
            Mat a = nn.as[l], out = nn.as[l + 1], w = nn.ws[l];
            memset(nn.es[l].es, 0, a.cols * sizeof(real));
            for (size_t j = 0; j < out.cols; j++) {
                real delta = nn.es[l + 1].es[j] * out.es[j] * ((real)1 - out.es[j]);  /* times sigmoid'(z) */
                g.bs[l].es[j] += delta;                                                /* BP3 */
                for (size_t i = 0; i < a.cols; i++) {
                    MAT_AT(g.ws[l], i, j) += a.es[i] * delta;                          /* BP4 */
                    nn.es[l].es[i] += MAT_AT(w, i, j) * delta;                         /* BP2 */
                }
            }
        }
    }
}

/* Gradients by finite differences: forward (C(w+eps) - C(w)) / eps, or central. */
static void mlp_finite_diff(MLP nn, MLP g, const real *X, const real *Y, size_t n, real eps, int central)
{
    Mat ps[2 * nn.count], gs[2 * g.count];
    size_t arrays = mlp_param_arrays(nn, ps);
    mlp_param_arrays(g, gs);
    real base = central ? 0 : mlp_cost(nn, X, Y, n);
    for (size_t k = 0; k < arrays; k++) {
        for (size_t i = 0; i < ps[k].rows * ps[k].cols; i++) {
            real saved = ps[k].es[i];
            ps[k].es[i] = saved + eps;
            real plus = mlp_cost(nn, X, Y, n);
            if (central) {
                ps[k].es[i] = saved - eps;
                gs[k].es[i] = (plus - mlp_cost(nn, X, Y, n)) / (2 * eps);
            } else {
                gs[k].es[i] = (plus - base) / eps;
            }
            ps[k].es[i] = saved;
        }
    }
}

static void mlp_learn(MLP nn, MLP g, real rate)
{
    Mat ps[2 * nn.count], gs[2 * g.count];
    size_t arrays = mlp_param_arrays(nn, ps);
    mlp_param_arrays(g, gs);
    for (size_t k = 0; k < arrays; k++)
        for (size_t i = 0; i < ps[k].rows * ps[k].cols; i++) ps[k].es[i] -= rate * gs[k].es[i];
}

#endif

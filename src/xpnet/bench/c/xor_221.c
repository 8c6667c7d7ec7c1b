/* The articles' XOR experiment, hand-written for a fixed 2-2-1 sigmoid network.
 *
 * usage: xor_221 bp|fd|fd-central ITERATIONS EPS < weights
 * stdin holds the 9 parameters in xpnet's order: W1 (2x2, row-major), b1 (2),
 * W2 (2x1), b2 (1). Full-batch gradient descent with learning rate 1. Prints
 * the final MSE and the seconds the training loop took, measured here.
 */
#include <tgmath.h>  /* exp() of a float is expf() */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef REAL
#define REAL float
#endif
typedef REAL real;

/* p[0..3] = W1[i][j] at 2i+j, p[4..5] = b1, p[6..7] = W2, p[8] = b2 */
enum { P = 9 };
static const real X[4][2] = {{0, 0}, {0, 1}, {1, 0}, {1, 1}};
static const real Y[4] = {0, 1, 1, 0};

static real sigmoid(real z) { return (real)1 / ((real)1 + exp(-z)); }

static real cost(const real *p)
{
    real total = 0;
    for (int s = 0; s < 4; s++) {
        real h0 = sigmoid(X[s][0] * p[0] + X[s][1] * p[2] + p[4]);
        real h1 = sigmoid(X[s][0] * p[1] + X[s][1] * p[3] + p[5]);
        real d = sigmoid(h0 * p[6] + h1 * p[7] + p[8]) - Y[s];
        total += d * d;
    }
    return total / 4;
}

static void backprop(const real *p, real *g)
{
    memset(g, 0, P * sizeof(real));
    for (int s = 0; s < 4; s++) {
        real x0 = X[s][0], x1 = X[s][1];
        real h0 = sigmoid(x0 * p[0] + x1 * p[2] + p[4]);
        real h1 = sigmoid(x0 * p[1] + x1 * p[3] + p[5]);
        real o = sigmoid(h0 * p[6] + h1 * p[7] + p[8]);
        real d_o = (real)0.5 * (o - Y[s]) * o * (1 - o);  /* BP1: 2/4 (o - y) sigmoid'(z) */
        real d_h0 = d_o * p[6] * h0 * (1 - h0);           /* BP2 */
        real d_h1 = d_o * p[7] * h1 * (1 - h1);
        g[8] += d_o;                                      /* BP3 */
        g[4] += d_h0;
        g[5] += d_h1;
        g[6] += h0 * d_o;                                 /* BP4 */
        g[7] += h1 * d_o;
        g[0] += x0 * d_h0;
        g[1] += x0 * d_h1;
        g[2] += x1 * d_h0;
        g[3] += x1 * d_h1;
    }
}

static void finite_diff(real *p, real *g, real eps, int central)
{
    real base = central ? 0 : cost(p);
    for (int k = 0; k < P; k++) {
        real saved = p[k];
        p[k] = saved + eps;
        real plus = cost(p);
        if (central) {
            p[k] = saved - eps;
            g[k] = (plus - cost(p)) / (2 * eps);
        } else {
            g[k] = (plus - base) / eps;
        }
        p[k] = saved;
    }
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s bp|fd|fd-central ITERATIONS EPS < weights\n", argv[0]);
        return 2;
    }
    int method = strcmp(argv[1], "bp") == 0 ? 0 : strcmp(argv[1], "fd") == 0 ? 1
               : strcmp(argv[1], "fd-central") == 0 ? 2 : -1;
    long iterations = atol(argv[2]);
    real eps = (real)atof(argv[3]);
    if (method < 0 || iterations < 0) {
        fprintf(stderr, "%s: bad arguments (method bp|fd|fd-central, ITERATIONS >= 0)\n", argv[0]);
        return 2;
    }
    real p[P], g[P];
    for (int k = 0; k < P; k++) {
        double w;
        if (scanf("%lf", &w) != 1) {
            fprintf(stderr, "%s: stdin must hold 9 weights\n", argv[0]);
            return 2;
        }
        p[k] = (real)w;
    }

    double start = now();
    for (long it = 0; it < iterations; it++) {
        if (method == 0)
            backprop(p, g);
        else
            finite_diff(p, g, eps, method == 2);
        for (int k = 0; k < P; k++) p[k] -= g[k];  /* learning rate 1 */
    }
    double seconds = now() - start;
    printf("mse %.9g\nseconds %.9f\n", (double)cost(p), seconds);
    return 0;
}

/* The articles' XOR experiment on the generic library in mlp.h.
 *
 * usage: xor_mlp bp|fd|fd-central ITERATIONS EPS SIZE0 SIZE1 ... < weights
 * SIZE0 must be 2 and the last size 1; stdin holds W1, b1, W2, b2, ... in
 * xpnet's order (W row-major, shape (fan_in, fan_out)). Full-batch gradient
 * descent with learning rate 1. Prints the final MSE and the seconds the
 * training loop took, measured here.
 */
#include <stdio.h>
#include <time.h>

#include "mlp.h"

static const real X[] = {0, 0, 0, 1, 1, 0, 1, 1};
static const real Y[] = {0, 1, 1, 0};

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv)
{
    if (argc < 6) {
        fprintf(stderr, "usage: %s bp|fd|fd-central ITERATIONS EPS SIZE0 SIZE1 ... < weights\n", argv[0]);
        return 2;
    }
    int method = strcmp(argv[1], "bp") == 0 ? 0 : strcmp(argv[1], "fd") == 0 ? 1
               : strcmp(argv[1], "fd-central") == 0 ? 2 : -1;
    long iterations = atol(argv[2]);
    real eps = (real)atof(argv[3]);
    size_t count = (size_t)argc - 5, sizes[argc];
    for (int i = 4; i < argc; i++) sizes[i - 4] = (size_t)atol(argv[i]);
    if (method < 0 || iterations < 0 || sizes[0] != 2 || sizes[count] != 1) {
        fprintf(stderr, "%s: bad arguments (method bp|fd|fd-central, sizes 2 ... 1)\n", argv[0]);
        return 2;
    }
    MLP nn = mlp_alloc(sizes, count), g = mlp_alloc(sizes, count);
    Mat ps[2 * count];
    size_t arrays = mlp_param_arrays(nn, ps);
    for (size_t k = 0; k < arrays; k++)
        for (size_t i = 0; i < ps[k].rows * ps[k].cols; i++) {
            double w;
            if (scanf("%lf", &w) != 1) {
                fprintf(stderr, "%s: stdin ended before every weight was read\n", argv[0]);
                return 2;
            }
            ps[k].es[i] = (real)w;
        }

    double start = now();
    for (long it = 0; it < iterations; it++) {
        if (method == 0)
            mlp_backprop(nn, g, X, Y, 4);
        else
            mlp_finite_diff(nn, g, X, Y, 4, eps, method == 2);
        mlp_learn(nn, g, 1);
    }
    double seconds = now() - start;
    printf("mse %.9g\nseconds %.9f\n", (double)mlp_cost(nn, X, Y, 4), seconds);
    return 0;
}

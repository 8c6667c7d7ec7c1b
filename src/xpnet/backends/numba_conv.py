"""numba kernels for convolution, pooling and batch normalisation on (N, C, H, W) and (N, C, S) arrays.

Each kernel writes every output element once, with ``prange`` over outputs that
are independent: im2col over the rows of the columns matrix, col2im and pooling
over (sample, channel) planes, batch norm over channels. No two threads ever add
into the same element. The batch-norm formulas are kernels.py's, compiled on
scalars through numba_math.
"""
import numpy as np
from numba import prange

from .. import kernels
from . import numba_math as M

_batch_norm = M.jit(kernels.batch_norm, inline="always")
_batch_norm_grad = M.jit(kernels.batch_norm_grad, inline="always")


def _im2col(x, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, pad_value, cols):
    n_samples, channels, height, width = x.shape
    for row in prange(channels * kh * kw):  # row (c, i, j) of the columns: independent of every other row
        c, i, j = row // (kh * kw), row // kw % kh, row % kw
        for n in range(n_samples):
            base = n * oh * ow
            for p in range(oh):
                h = p * sh - ph + i * dh
                for q in range(ow):
                    w = q * sw - pw + j * dw
                    inside = 0 <= h < height and 0 <= w < width
                    cols[row, base + p * ow + q] = x[n, c, h, w] if inside else pad_value


def _col2im(cols, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, out):
    n_samples, channels, height, width = out.shape
    for plane in prange(n_samples * channels):  # one (n, c) plane of ∂C/∂x per thread: no shared sums
        n, c = plane // channels, plane % channels
        for i in range(kh):
            for j in range(kw):
                row = (c * kh + i) * kw + j
                for p in range(oh):
                    h = p * sh - ph + i * dh
                    if h < 0 or h >= height:
                        continue
                    for q in range(ow):
                        w = q * sw - pw + j * dw
                        if 0 <= w < width:
                            out[n, c, h, w] += cols[row, n * oh * ow + p * ow + q]


def _max_pool(x, kh, kw, sh, sw, ph, pw, y, argmax):
    n_samples, channels, height, width = x.shape
    oh, ow = y.shape[2], y.shape[3]
    for plane in prange(n_samples * channels):
        n, c = plane // channels, plane % channels
        for p in range(oh):
            for q in range(ow):
                best, where = -np.inf, 0
                for i in range(kh):
                    h = p * sh - ph + i
                    for j in range(kw):
                        w = q * sw - pw + j
                        if 0 <= h < height and 0 <= w < width:
                            v = x[n, c, h, w]
                            if v > best or (v != v and best == best):  # the first maximum; NaN wins, as argmax
                                best, where = v, i * kw + j
                y[n, c, p, q] = best
                argmax[n, c, p, q] = where


def _max_pool_backward(grad_y, argmax, kh, kw, sh, sw, ph, pw, grad_x):
    n_samples, channels, oh, ow = grad_y.shape
    for plane in prange(n_samples * channels):
        n, c = plane // channels, plane % channels
        for p in range(oh):
            for q in range(ow):
                k = argmax[n, c, p, q]
                h, w = p * sh - ph + k // kw, q * sw - pw + k % kw
                if 0 <= h < grad_x.shape[2] and 0 <= w < grad_x.shape[3]:  # a window of padding alone: no input
                    grad_x[n, c, h, w] += grad_y[n, c, p, q]


def _avg_pool(x, kh, kw, sh, sw, ph, pw, y):
    n_samples, channels, height, width = x.shape
    oh, ow = y.shape[2], y.shape[3]
    size = y.dtype.type(kh * kw)
    for plane in prange(n_samples * channels):
        n, c = plane // channels, plane % channels
        for p in range(oh):
            for q in range(ow):
                total = y.dtype.type(0)
                for i in range(kh):
                    h = p * sh - ph + i
                    for j in range(kw):
                        w = q * sw - pw + j
                        if 0 <= h < height and 0 <= w < width:
                            total += x[n, c, h, w]
                y[n, c, p, q] = total / size


def _avg_pool_backward(grad_y, kh, kw, sh, sw, ph, pw, grad_x):
    n_samples, channels, oh, ow = grad_y.shape
    height, width = grad_x.shape[2], grad_x.shape[3]
    size = grad_x.dtype.type(kh * kw)
    for plane in prange(n_samples * channels):
        n, c = plane // channels, plane % channels
        for p in range(oh):
            for q in range(ow):
                share = grad_y[n, c, p, q] / size
                for i in range(kh):
                    h = p * sh - ph + i
                    for j in range(kw):
                        w = q * sw - pw + j
                        if 0 <= h < height and 0 <= w < width:
                            grad_x[n, c, h, w] += share


def _bn_statistics(x, mean, var):
    n_samples, channels, size = x.shape
    count = n_samples * size
    for c in prange(channels):  # two passes per channel, summed in float64
        total = 0.0
        for n in range(n_samples):
            for s in range(size):
                total += x[n, c, s]
        mu = total / count
        squares = 0.0
        for n in range(n_samples):
            for s in range(size):
                d = x[n, c, s] - mu
                squares += d * d
        mean[c], var[c] = mu, squares / count


def _bn_forward(x, mean, inv_std, gamma, beta, y, xhat):
    n_samples, channels, size = x.shape
    for c in prange(channels):
        for n in range(n_samples):
            for s in range(size):
                xhat[n, c, s], y[n, c, s] = _batch_norm(M, x[n, c, s], mean[c], inv_std[c], gamma[c], beta[c])


def _bn_sums(grad_y, xhat, sum_dy, sum_dy_xhat):
    n_samples, channels, size = grad_y.shape
    for c in prange(channels):
        a, b = 0.0, 0.0
        for n in range(n_samples):
            for s in range(size):
                a += grad_y[n, c, s]
                b += grad_y[n, c, s] * xhat[n, c, s]
        sum_dy[c], sum_dy_xhat[c] = a, b


def _bn_backward(grad_y, xhat, inv_std, gamma, mean_dy, mean_dy_xhat, grad_x):
    n_samples, channels, size = grad_y.shape
    for c in prange(channels):
        for n in range(n_samples):
            for s in range(size):
                grad_x[n, c, s] = _batch_norm_grad(M, grad_y[n, c, s], xhat[n, c, s], inv_std[c], gamma[c],
                                                   mean_dy[c], mean_dy_xhat[c])


FUNCTIONS = (_im2col, _col2im, _max_pool, _max_pool_backward, _avg_pool, _avg_pool_backward, _bn_statistics,
             _bn_forward, _bn_sums, _bn_backward)

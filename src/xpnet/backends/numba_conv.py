"""numba kernels for convolution, pooling and batch normalisation on (N, C, H, W) and (N, C, S) arrays.

Each kernel writes every output element once, with ``prange`` over outputs that
are independent: im2col over rows of the columns, col2im and pooling over
(sample, channel) planes (col2im over channels where it loops over samples
innermost), batch norm over channels. No two threads ever add into
the same element. im2col, col2im and max pooling index their arrays flat, with
unsigned indices (numba_mlp's ``ix``): a slice per row cost a view each, and
4-D indices a wrap-around check each, which made col2im 2.5–3× slower on
LeNet's and conv64's shapes. The flat im2col took 4.4–8.2 ms a step for
conv64's columns where NumPy's strided copy took 10.1–10.2 (LeNet's: the
same). The batch-norm formulas are kernels.py's, compiled on scalars through
numba_math.
"""
import numpy as np
from numba import prange

from .. import kernels
from . import numba_math as M
from .numba_mlp import ix

# im2col and col2im loop over the samples innermost where a channel has fewer than SMALL_FIELD outputs per
# sample: the loop along a row is then too short to pay for itself. conv1d's layers (10 and 4 outputs) took
# 53-98 µs a call so against 87-152 µs, a 7×7 field 210 against 393 µs (im2col); LeNet's second layer (100)
# took 2.4× longer so (2026-12-02, AMD EPYC family 25, AVX2, one thread).
SMALL_FIELD = 32

_batch_norm = M.jit(kernels.batch_norm, inline="always")
_batch_norm_grad = M.jit(kernels.batch_norm_grad, inline="always")


@M.jit(inline="always")
def _span(offset, stride, size, count):
    """[lo, hi): the outputs k in [0, count) whose input k·stride + offset lies in [0, size)."""
    lo = min(max(0, -((offset) // stride)), count)  # ceil(−offset / stride)
    hi = min(max(lo, -((offset - size) // stride)), count)  # ceil((size − offset) / stride)
    return lo, hi


def _im2col(x, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, pad_value, cols):
    n_samples, channels, height, width = x.shape
    xs, out = x.reshape(-1), cols.reshape(-1)  # flat, as in _col2im
    per_sample, field = channels * height * width, oh * ow
    if field < SMALL_FIELD:  # few outputs per sample: the samples innermost, one element of each at a time
        for row in prange(channels * kh * kw):  # one row (c, i, j) of the columns per thread
            c, i, j = row // (kh * kw), row // kw % kh, row % kw
            for p in range(oh):
                h = p * sh - ph + i * dh
                for q in range(ow):
                    w, at = q * sw - pw + j * dw, row * n_samples * field + p * ow + q  # + n·field
                    if 0 <= h < height and 0 <= w < width:
                        source = (c * height + h) * width + w  # + n·per_sample
                        for n in range(n_samples):
                            out[ix(at + n * field)] = xs[ix(source + n * per_sample)]
                    else:
                        for n in range(n_samples):
                            out[ix(at + n * field)] = pad_value
        return
    for row in prange(channels * kh * kw):  # a separate loop: a branch inside it made LeNet's im2col 17 % slower
        c, i, j = row // (kh * kw), row // kw % kh, row % kw
        q_lo, q_hi = _span(j * dw - pw, sw, width, ow)  # the outputs whose window column j is inside
        for n in range(n_samples):
            for p in range(oh):
                h, at = p * sh - ph + i * dh, ((row * n_samples + n) * oh + p) * ow  # + q
                lo, hi = (q_lo, q_hi) if 0 <= h < height else (ow, ow)  # a row of padding: none inside
                for q in range(lo):
                    out[ix(at + q)] = pad_value
                source = ((n * channels + c) * height + h) * width + j * dw - pw  # + q·sw
                if sw == 1:
                    for q in range(lo, hi):
                        out[ix(at + q)] = xs[ix(source + q)]
                else:
                    for q in range(lo, hi):
                        out[ix(at + q)] = xs[ix(source + q * sw)]
                for q in range(hi, ow):
                    out[ix(at + q)] = pad_value


def _col2im(cols, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, out):
    n_samples, channels, height, width = out.shape
    grad, columns = out.reshape(-1), cols.reshape(-1)  # flat, with unsigned indices: no view per row, and
    per_sample, field = channels * height * width, oh * ow  # the stride-1 row loop vectorises
    if field < SMALL_FIELD:  # few outputs per sample: the samples innermost, as in _im2col
        for c in prange(channels):  # the rows (c, i, j) of one channel add into its planes only
            for i in range(kh):
                for j in range(kw):
                    for p in range(oh):
                        h = p * sh - ph + i * dh
                        for q in range(ow):
                            w = q * sw - pw + j * dw
                            if 0 <= h < height and 0 <= w < width:
                                at, into = ((c * kh + i) * kw + j) * n_samples * field + p * ow + q, \
                                    (c * height + h) * width + w
                                for n in range(n_samples):
                                    grad[ix(into + n * per_sample)] += columns[ix(at + n * field)]
        return
    rows, spans = np.empty((kh, 2), np.int64), np.empty((kw, 2), np.int64)
    for i in range(kh):  # the same for every plane: the floor divisions, once per plane, cost conv1d's small
        rows[i] = _span(i * dh - ph, sh, height, oh)  # planes half their time
    for j in range(kw):
        spans[j] = _span(j * dw - pw, sw, width, ow)
    for plane in prange(n_samples * channels):
        n, c = plane // channels, plane % channels
        for i in range(kh):
            p_lo, p_hi = rows[i, 0], rows[i, 1]
            for j in range(kw):
                q_lo, q_hi = spans[j, 0], spans[j, 1]
                source = ((c * kh + i) * kw + j) * cols.shape[1] + n * oh * ow  # row (c, i, j), sample n
                for p in range(p_lo, p_hi):
                    into = (plane * height + p * sh - ph + i * dh) * width + j * dw - pw  # + q·sw
                    at = source + p * ow
                    if sw == 1:
                        for q in range(q_lo, q_hi):
                            grad[ix(into + q)] += columns[ix(at + q)]
                    else:
                        for q in range(q_lo, q_hi):
                            grad[ix(into + q * sw)] += columns[ix(at + q)]


@M.jit(inline="always")
def _max_pool_plane(xs, ys, wheres, plane, height, width, oh, ow, kh, kw, sh, sw, ph, pw, inside, exact):
    """The windows' maxima and argmax of one plane; returns the sum of every value read (NaN if one was).

    Without ``exact`` a NaN loses every comparison, which keeps the loop free of branches: testing each
    value for NaN made LeNet's pooling 8× slower. The sum tells the caller to redo the plane ``exact``ly,
    where the first NaN wins, as in argmax (an inf and a −inf also give NaN: slower, still right).
    ``inside``: every window lies inside the input (no padding), so no window is clipped."""
    total = xs.dtype.type(0)
    for p in range(oh):
        i_lo, i_hi = (0, kh) if inside else _span(p * sh - ph, 1, height, kh)  # window rows inside the input
        for q in range(ow):
            j_lo, j_hi = (0, kw) if inside else _span(q * sw - pw, 1, width, kw)
            best, where = xs.dtype.type(-np.inf), 0  # a window of padding alone: −∞ at 0, as argmax
            for i in range(i_lo, i_hi):
                at = (plane * height + p * sh - ph + i) * width + q * sw - pw  # + j
                for j in range(j_lo, j_hi):
                    v = xs[ix(at + j)]
                    total += v
                    take = (v > best) | (exact & (v != v) & (best == best))  # larger, or the first NaN
                    best, where = (v, i * kw + j) if take else (best, where)
            ys[ix((plane * oh + p) * ow + q)], wheres[ix((plane * oh + p) * ow + q)] = best, where
    return total


def _max_pool(x, kh, kw, sh, sw, ph, pw, y, argmax):
    n_samples, channels, height, width = x.shape
    oh, ow = y.shape[2], y.shape[3]
    xs, ys, wheres = x.reshape(-1), y.reshape(-1), argmax.reshape(-1)  # flat, as in _col2im
    for plane in prange(n_samples * channels):
        # The common window with constant bounds, which LLVM unrolls and vectorises along q: 0.22 against
        # 0.49 ms for the same loop with the bounds as variables, on LeNet's first pool.
        if kh == 2 and kw == 2 and ph == 0 and pw == 0:
            total = _max_pool_plane(xs, ys, wheres, plane, height, width, oh, ow, 2, 2, sh, sw, 0, 0, True, False)
        else:
            total = _max_pool_plane(xs, ys, wheres, plane, height, width, oh, ow, kh, kw, sh, sw, ph, pw, False,
                                    False)
        if total != total:  # rare: a NaN (or inf and −inf) in the plane
            _max_pool_plane(xs, ys, wheres, plane, height, width, oh, ow, kh, kw, sh, sw, ph, pw, False, True)


def _max_pool_backward(grad_y, argmax, kh, kw, sh, sw, ph, pw, grad_x):
    n_samples, channels, oh, ow = grad_y.shape
    height, width = grad_x.shape[2], grad_x.shape[3]
    dy, wheres, dx = grad_y.reshape(-1), argmax.reshape(-1), grad_x.reshape(-1)
    rows, columns = np.empty(kh * kw, np.int64), np.empty(kh * kw, np.int64)  # a table, not two divisions per
    for k in range(kh * kw):                                                 # output: 40 % of LeNet's pool1
        rows[k], columns[k] = k // kw - ph, k % kw - pw
    for plane in prange(n_samples * channels):
        for at in range(plane * height * width, (plane + 1) * height * width):  # grad_x comes uninitialised:
            dx[ix(at)] = 0                                                      # zeroed here, while in cache
        for p in range(oh):
            for q in range(ow):
                k = wheres[ix((plane * oh + p) * ow + q)]
                h, w = p * sh + rows[k], q * sw + columns[k]
                if 0 <= h < height and 0 <= w < width:  # a window of padding alone: no input
                    dx[ix((plane * height + h) * width + w)] += dy[ix((plane * oh + p) * ow + q)]


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

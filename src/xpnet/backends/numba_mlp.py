"""One compiled function for a whole MLP training run: forward, backward, update, batch after batch.

Layout, as in a small C library: every parameter of the network lives in one
flat array ``P`` (W1, b1, W2, b2, ... in get_weights() order, each W row-major
(fan_in, fan_out)), gradients in ``G``, optimiser state in ``S1``/``S2``, all
with the same offsets. ``layout`` holds, per layer l, its fan-in
``layout[SIZE, l]`` (fan-out: ``layout[SIZE, l + 1]``), the offsets of its W
and b, and its activation code. Activations are kept transposed, one row per
unit and one column per sample: ``A`` is (Σ units, m), layer l's units are
rows ``layout[ROW, l + 1]`` on, and rows 0.. hold the batch itself
(transposed, or as plain (m, d) rows in that space when the first layer's
products go to BLAS, which reads them transposed for free). So the
loops over the batch are innermost, contiguous and index from 0 (numba can
drop its negative-index checks and LLVM vectorises them), and large products
go to BLAS as ``Wᵀ A`` on row blocks, without copies.

The formulas are those of kernels.py, compiled on scalars through numba_math.
The hot loop makes no calls that pass arrays (each costs reference counting):
``batch_gradient`` and ``update`` are inlined into ``train``, which runs them
back to back; ``compute_gradient`` and ``apply_update`` are the same two
halves as separate entries, so data-parallel training can average G over the
ranks in between.
"""
import types

import numpy as np

from .. import kernels
from . import numba_math as M

ACTIVATION_CODES = {name: i for i, name in enumerate(kernels.ACTIVATIONS)}
LOSS_CODES = {"mse": 0, "bce": 1, "bce_logits": 2, "softmax_ce": 3}
OPTIMIZER_CODES = {"sgd": 0, "rmsprop": 1, "adam": 2}
SIZE, W_OFFSET, B_OFFSET, ACTIVATION, ROW = range(5)  # rows of `layout`
# Slots of the float64 hyperparameter array `hp`.
LR, MOMENTUM, NESTEROV, RHO, BETA1, BETA2, EPS, WEIGHT_DECAY, MAX_NORM, CLIP_NORM, BCE_EPS, FD_EPS = range(12)
N_HP = 12
BLAS_MIN = 1 << 15  # multiply-adds in a product from which BLAS beats plain loops
USE_BLAS = True  # False in the variant for networks with no product that large (see SMALL below)
SMALL_BLOCK = 64  # activations up to which a scalar loop beats a call to a vectorised one


def jit(fn):
    return M.jit(fn, fastmath=M.FASTMATH)


def jit_inline(fn):
    """For functions in hot loops: inlined where called, so the loop can vectorise."""
    return M.jit(fn, fastmath=M.FASTMATH, inline="always")


def make_layout(sizes, activations):
    """The int64 (5, L+1) layout array of an MLP with these layer sizes and activation names."""
    L = len(sizes) - 1
    layout = np.zeros((5, L + 1), dtype=np.int64)
    layout[SIZE] = sizes
    layout[ROW] = np.cumsum([0] + list(sizes[:-1]))
    offset = 0
    for l in range(L):
        layout[W_OFFSET, l], layout[B_OFFSET, l] = offset, offset + sizes[l] * sizes[l + 1]
        offset += (sizes[l] + 1) * sizes[l + 1]
        layout[ACTIVATION, l] = ACTIVATION_CODES[activations[l]]
    return layout, offset


_act = [jit(forward) for forward, _ in kernels.ACTIVATIONS.values()]
_act_grad = [jit(backward) for _, backward in kernels.ACTIVATIONS.values()]
(_identity, _sigmoid, _tanh, _relu, _leaky_relu, _gelu, _gelu_tanh) = _act
(_identity_g, _sigmoid_g, _tanh_g, _relu_g, _leaky_relu_g, _gelu_g, _gelu_tanh_g) = _act_grad
_squared_error, _squared_error_grad = jit(kernels.squared_error), jit(kernels.squared_error_grad)
_cross_entropy, _cross_entropy_grad = jit(kernels.cross_entropy), jit(kernels.cross_entropy_grad)
_ce_logits, _ce_logits_grad = jit(kernels.cross_entropy_logits), jit(kernels.cross_entropy_logits_grad)
_softmax_ce_terms, _softmax_ce_grad = jit(kernels.softmax_ce_terms), jit(kernels.softmax_ce_grad)
_weight_decayed, _sgd, _rmsprop, _adam = (jit(f) for f in (kernels.weight_decayed, kernels.sgd, kernels.rmsprop,
                                                           kernels.adam))


@jit_inline
def activation(code, z, alpha):
    """σ(z) for the activation with this code (the order of kernels.ACTIVATIONS), one number."""
    if code == 0:
        return _identity(M, z, alpha)
    elif code == 1:
        return _sigmoid(M, z, alpha)
    elif code == 2:
        return _tanh(M, z, alpha)
    elif code == 3:
        return _relu(M, z, alpha)
    elif code == 4:
        return _leaky_relu(M, z, alpha)
    elif code == 5:
        return _gelu(M, z, alpha)
    return _gelu_tanh(M, z, alpha)


@jit_inline
def activation_grad(code, grad_a, z, a, alpha):
    """grad_a ⊙ σ'(z) for the activation with this code, one number."""
    if code == 0:
        return _identity_g(M, grad_a, z, a, alpha)
    elif code == 1:
        return _sigmoid_g(M, grad_a, z, a, alpha)
    elif code == 2:
        return _tanh_g(M, grad_a, z, a, alpha)
    elif code == 3:
        return _relu_g(M, grad_a, z, a, alpha)
    elif code == 4:
        return _leaky_relu_g(M, grad_a, z, a, alpha)
    elif code == 5:
        return _gelu_g(M, grad_a, z, a, alpha)
    return _gelu_tanh_g(M, grad_a, z, a, alpha)


@jit
def activate(code, z, a, alpha):
    """a = σ(z) on a block: the branch on the activation sits outside each row's loop, so that loop,
    a straight run of one formula, vectorises."""
    for j in range(z.shape[0]):
        zj, aj = z[j], a[j]
        if code == 0:
            aj[:] = zj
        elif code == 1:
            for r in range(zj.shape[0]):
                aj[r] = _sigmoid(M, zj[r], alpha)
        elif code == 2:
            for r in range(zj.shape[0]):
                aj[r] = _tanh(M, zj[r], alpha)
        elif code == 3:
            for r in range(zj.shape[0]):
                aj[r] = _relu(M, zj[r], alpha)
        elif code == 4:
            for r in range(zj.shape[0]):
                aj[r] = _leaky_relu(M, zj[r], alpha)
        elif code == 5:
            for r in range(zj.shape[0]):
                aj[r] = _gelu(M, zj[r], alpha)
        else:
            for r in range(zj.shape[0]):
                aj[r] = _gelu_tanh(M, zj[r], alpha)


@jit
def activate_grad(code, delta, z, a, alpha):
    """delta ← delta ⊙ σ'(z) on a block: ∂C/∂a becomes δ = ∂C/∂z (BP1 at the output, BP2's σ' factor below)."""
    for j in range(z.shape[0]):
        dj, zj, aj = delta[j], z[j], a[j]
        if code == 1:
            for r in range(zj.shape[0]):
                dj[r] = _sigmoid_g(M, dj[r], zj[r], aj[r], alpha)
        elif code == 2:
            for r in range(zj.shape[0]):
                dj[r] = _tanh_g(M, dj[r], zj[r], aj[r], alpha)
        elif code == 3:
            for r in range(zj.shape[0]):
                dj[r] = _relu_g(M, dj[r], zj[r], aj[r], alpha)
        elif code == 4:
            for r in range(zj.shape[0]):
                dj[r] = _leaky_relu_g(M, dj[r], zj[r], aj[r], alpha)
        elif code == 5:
            for r in range(zj.shape[0]):
                dj[r] = _gelu_g(M, dj[r], zj[r], aj[r], alpha)
        elif code == 6:
            for r in range(zj.shape[0]):
                dj[r] = _gelu_tanh_g(M, dj[r], zj[r], aj[r], alpha)
        # code 0, identity: σ' = 1, nothing to do


@jit_inline
def forward(P, layout, alphas, m, Z, A):
    """z = Wᵀa + b and a = σ(z), layer by layer, for the m samples in the first rows of A."""
    for l in range(layout.shape[1] - 1):
        fan_in, fan_out = layout[SIZE, l], layout[SIZE, l + 1]
        wo, bo, code, alpha = layout[W_OFFSET, l], layout[B_OFFSET, l], layout[ACTIVATION, l], alphas[l]
        inp, out = layout[ROW, l], layout[ROW, l + 1]
        a_in, z, a = A[inp:out], Z[out:out + fan_out], A[out:out + fan_out]
        if USE_BLAS and fan_in * fan_out * m >= BLAS_MIN:
            W = P[wo:wo + fan_in * fan_out].reshape(fan_in, fan_out)
            if l == 0:  # the batch sits in block 0 as rows (see batch_gradient)
                np.dot(W.T, A[:fan_in].reshape(m, fan_in).T, z)
            else:
                np.dot(W.T, a_in, z)
            for j in range(fan_out):
                bias = P[bo + j]
                for r in range(m):
                    z[j, r] += bias
        else:
            for j in range(fan_out):
                bias = P[bo + j]
                for r in range(m):
                    z[j, r] = bias
            for i in range(fan_in):
                for j in range(fan_out):
                    w = P[wo + i * fan_out + j]
                    for r in range(m):
                        z[j, r] += w * a_in[i, r]
        if fan_out * m > SMALL_BLOCK:
            activate(code, z, a, alpha)
        else:
            for j in range(fan_out):
                for r in range(m):
                    a[j, r] = activation(code, z[j, r], alpha)


@jit_inline
def output_loss(loss_code, Y, order, start, a, d, bce_eps, want_grad):
    """Mean loss of the outputs ``a`` (k, m), sample r against target row Y[order[start + r]];
    with want_grad, d ← ∂C/∂a, where backpropagation starts (BP1)."""
    k, m = a.shape
    total = 0.0
    if loss_code == 3:  # softmax cross-entropy over the k logits of each sample
        for r in range(m):
            row = order[start + r]
            top = a[0, r]
            for j in range(1, k):
                top = max(top, a[j, r])
            norm = 0.0
            for j in range(k):
                norm += M.exp(a[j, r] - top)
            for j in range(k):
                total += _softmax_ce_terms(M, a[j, r], top, norm, Y[row, j])
                if want_grad:
                    d[j, r] = _softmax_ce_grad(M, a[j, r], top, norm, Y[row, j], m)  # (softmax − y) / m
        return total / m
    count = m * k
    for r in range(m):
        row = order[start + r]
        for j in range(k):
            y = Y[row, j]
            if loss_code == 0:
                total += _squared_error(M, a[j, r], y)
                if want_grad:
                    d[j, r] = _squared_error_grad(M, a[j, r], y) / count
            elif loss_code == 1:
                p = M.clip(a[j, r], bce_eps, 1.0 - bce_eps)
                total += _cross_entropy(M, p, y)
                if want_grad:
                    d[j, r] = _cross_entropy_grad(M, p, y) / count
            else:
                total += _ce_logits(M, a[j, r], y)
                if want_grad:
                    d[j, r] = _ce_logits_grad(M, a[j, r], y) / count
    return total / count


@jit
def limit_norms(P, layout, limit):
    """Max-norm: scale each unit's incoming weights (a column of W) to an L2 norm ≤ limit."""
    for l in range(layout.shape[1] - 1):
        fan_in, fan_out, wo = layout[SIZE, l], layout[SIZE, l + 1], layout[W_OFFSET, l]
        for j in range(fan_out):
            sq = 0.0
            for i in range(fan_in):
                sq += P[wo + i * fan_out + j] ** 2
            norm = M.sqrt(sq)
            if norm > limit:
                for i in range(fan_in):
                    P[wo + i * fan_out + j] *= limit / norm


@jit
def clip_gradient(G, limit):
    """G ← G · min(1, limit / (‖G‖ + 1e-6)), ‖G‖ the L2 norm of the whole gradient (as Backend.clip_grad_norm).

    ‖G‖ = m √Σ(g/m)² with m = max|g|, so squaring huge gradients cannot overflow.
    """
    largest = 0.0
    for k in range(G.shape[0]):
        largest = max(largest, abs(G[k]))
    if largest == 0.0 or largest != largest:
        return
    sq = 0.0
    for k in range(G.shape[0]):
        sq += (G[k] / largest) ** 2
    scale = min(1.0, limit / (largest * M.sqrt(sq) + 1e-6))
    for k in range(G.shape[0]):
        G[k] *= scale


@jit
def finite_difference(Y, order, start, m, P, G, layout, alphas, loss_code, hp, central, Z, A, D):
    """G ← ∂C/∂θ by perturbing one parameter at a time (batch already in A); returns the loss at θ."""
    eps, bce_eps = hp[FD_EPS], hp[BCE_EPS]
    row = layout[ROW, layout.shape[1] - 1]
    out, d = A[row:], D[row:]  # the output rows; d stays untouched (no gradient wanted)
    forward(P, layout, alphas, m, Z, A)
    base = output_loss(loss_code, Y, order, start, out, d, bce_eps, False)
    for q in range(P.shape[0]):
        old = P[q]
        P[q] = old + eps
        forward(P, layout, alphas, m, Z, A)
        plus = output_loss(loss_code, Y, order, start, out, d, bce_eps, False)
        if central:
            P[q] = old - eps
            forward(P, layout, alphas, m, Z, A)
            minus = output_loss(loss_code, Y, order, start, out, d, bce_eps, False)
            G[q] = (plus - minus) / (2.0 * eps)
        else:
            G[q] = (plus - base) / eps
        P[q] = old
    return base


@jit_inline
def batch_gradient(X, Y, order, start, m, load, P, G, layout, alphas, loss_code, hp, gradient, Z, A, D):
    """G ← ∂C/∂θ on the m rows order[start:start+m] of X, Y; returns their mean loss.

    Z, A, D: (Σ units, m) work views. gradient: 0 backprop, 1 forward differences, 2 central differences.
    load=False reuses the batch already transposed into the first rows of A.
    """
    d, L = X.shape[1], layout.shape[1] - 1
    if USE_BLAS and load and d * layout[SIZE, 1] * m >= BLAS_MIN:  # block 0 of A holds the batch as rows (m, d): BLAS
        rows = A[:d].reshape(m, d)                      # reads it transposed, so no copy needs transposing
        for r in range(m):
            rows[r, :] = X[order[start + r]]
    elif load:  # the batch, transposed into the first rows of A, 16 samples at a time so that both
        for r0 in range(0, m, 16):  # the rows read and the rows written stay in cache
            for i in range(d):
                for r in range(r0, min(r0 + 16, m)):
                    A[i, r] = X[order[start + r], i]
    if gradient != 0:
        return finite_difference(Y, order, start, m, P, G, layout, alphas, loss_code, hp, gradient == 2, Z, A, D)
    forward(P, layout, alphas, m, Z, A)
    out = layout[ROW, L]
    loss = output_loss(loss_code, Y, order, start, A[out:], D[out:], hp[BCE_EPS], True)
    # Backward: D holds ∂C/∂a of the output rows (BP1 begins there).
    for l in range(L - 1, -1, -1):
        fan_in, fan_out = layout[SIZE, l], layout[SIZE, l + 1]
        wo, bo, code, alpha = layout[W_OFFSET, l], layout[B_OFFSET, l], layout[ACTIVATION, l], alphas[l]
        inp, out = layout[ROW, l], layout[ROW, l + 1]
        a_in, z, a = A[inp:out], Z[out:out + fan_out], A[out:out + fan_out]
        delta, delta_in = D[out:out + fan_out], D[inp:out]
        if fan_out * m > SMALL_BLOCK:  # δ = ∂C/∂a ⊙ σ'(z)
            activate_grad(code, delta, z, a, alpha)
        elif code != 0:
            for j in range(fan_out):
                for r in range(m):
                    delta[j, r] = activation_grad(code, delta[j, r], z[j, r], a[j, r], alpha)
        for j in range(fan_out):
            s = 0.0
            for r in range(m):
                s += delta[j, r]
            G[bo + j] = s  # BP3: ∂C/∂b = δ, summed over the batch
        big = USE_BLAS and fan_in * fan_out * m >= BLAS_MIN
        if big:  # BP4: ∂C/∂W = a_in δᵀ
            grad_W = G[wo:wo + fan_in * fan_out].reshape(fan_in, fan_out)
            if l == 0:  # the batch as rows
                np.dot(A[:fan_in].reshape(m, fan_in).T, delta.T, grad_W)
            else:
                np.dot(a_in, delta.T, grad_W)
        else:
            for i in range(fan_in):
                for j in range(fan_out):
                    s = 0.0
                    for r in range(m):
                        s += a_in[i, r] * delta[j, r]
                    G[wo + i * fan_out + j] = s
        if l > 0:  # BP2: ∂C/∂a of the layer below = W δ
            if big:
                np.dot(P[wo:wo + fan_in * fan_out].reshape(fan_in, fan_out), delta, delta_in)
            else:
                delta_in[:, :] = 0.0
                for i in range(fan_in):
                    for j in range(fan_out):
                        w = P[wo + i * fan_out + j]
                        for r in range(m):
                            delta_in[i, r] += w * delta[j, r]
    return loss


@jit_inline
def update(P, G, S1, S2, layout, opt_code, hp, t):
    """Step t of the optimiser with gradient G (clipped first when hp[CLIP_NORM] > 0), then the max-norm limit."""
    lr, wd = hp[LR], hp[WEIGHT_DECAY]
    if hp[CLIP_NORM] > 0.0:
        clip_gradient(G, hp[CLIP_NORM])
    # kernels.py's formulas on every parameter.
    if opt_code == 0 and hp[MOMENTUM] == 0.0:  # plain SGD: w ← w − lr g
        for q in range(P.shape[0]):
            P[q] = P[q] - lr * _weight_decayed(M, P[q], G[q], wd)
    elif opt_code == 0:
        momentum, nesterov = hp[MOMENTUM], hp[NESTEROV] != 0.0
        for q in range(P.shape[0]):
            g = _weight_decayed(M, P[q], G[q], wd)
            P[q], S1[q] = _sgd(M, P[q], g, S1[q], lr, momentum, nesterov)
    elif opt_code == 1:
        for q in range(P.shape[0]):
            g = _weight_decayed(M, P[q], G[q], wd)
            P[q], S1[q] = _rmsprop(M, P[q], g, S1[q], lr, hp[RHO], hp[EPS])
    else:
        bias1, bias2 = 1.0 - hp[BETA1] ** t, 1.0 - hp[BETA2] ** t
        for q in range(P.shape[0]):
            g = _weight_decayed(M, P[q], G[q], wd)
            P[q], S1[q], S2[q] = _adam(M, P[q], g, S1[q], S2[q], lr, hp[BETA1], hp[BETA2], hp[EPS], bias1, bias2)
    if hp[MAX_NORM] > 0.0:
        limit_norms(P, layout, hp[MAX_NORM])


@jit
def train(X, Y, order, batch_size, repeats, P, G, S1, S2, layout, alphas, loss_code, opt_code, hp, t, gradient,
          Zbuf, Abuf, Dbuf, losses, lrs):
    """``repeats`` passes over the rows of X, Y in ``order``, one training step per batch.

    gradient: 0 backprop, 1 forward differences, 2 central differences.
    Zbuf, Abuf, Dbuf: flat work buffers of at least Σ units × batch_size.
    losses[b] ← the loss of batch b (before its update) in the last pass.
    lrs: the learning rate of each step of the call (a schedule's), or empty to keep hp[LR].
    Returns the optimiser's step count t (Adam's bias correction counts from 1).
    """
    n = order.shape[0]
    L = layout.shape[1] - 1
    rows = layout[ROW, L] + layout[SIZE, L]
    n_batches = (n + batch_size - 1) // batch_size
    m = min(batch_size, n)
    Z, A, D = Zbuf[:rows * m].reshape(rows, m), Abuf[:rows * m].reshape(rows, m), Dbuf[:rows * m].reshape(rows, m)
    for repeat in range(repeats):
        for b in range(n_batches):
            start = b * batch_size
            if min(batch_size, n - start) != m:  # the short last batch: (rows, m) views of its own width
                m = min(batch_size, n - start)
                Z, A, D = (Zbuf[:rows * m].reshape(rows, m), Abuf[:rows * m].reshape(rows, m),
                           Dbuf[:rows * m].reshape(rows, m))
            t += 1
            losses[b] = batch_gradient(X, Y, order, start, m, repeat == 0 or n_batches > 1, P, G, layout, alphas,
                                       loss_code, hp, gradient, Z, A, D)
            if lrs.shape[0] > 0:
                hp[LR] = lrs[repeat * n_batches + b]
            update(P, G, S1, S2, layout, opt_code, hp, t)
    return t


@jit
def compute_gradient(X, Y, order, P, G, layout, alphas, loss_code, hp, gradient, Zbuf, Abuf, Dbuf):
    """Half a step, for data-parallel training: G ← ∂C/∂θ on rows ``order`` of X, Y; returns their mean loss."""
    L, m = layout.shape[1] - 1, order.shape[0]
    rows = layout[ROW, L] + layout[SIZE, L]
    Z, A, D = Zbuf[:rows * m].reshape(rows, m), Abuf[:rows * m].reshape(rows, m), Dbuf[:rows * m].reshape(rows, m)
    return batch_gradient(X, Y, order, 0, m, True, P, G, layout, alphas, loss_code, hp, gradient, Z, A, D)


@jit
def apply_update(P, G, S1, S2, layout, opt_code, hp, t):
    """The other half: step t of the optimiser with the gradient in G (averaged over the ranks by then)."""
    update(P, G, S1, S2, layout, opt_code, hp, t)


def _without_blas(names):
    """Copies of the functions ``names`` (callees first) compiled with USE_BLAS = False.

    With no np.dot in it (numba prunes the constant-false branches), the step
    has no path that can raise, so numba can drop the reference counting
    around its array views: ~8% off the XOR step. For networks whose every
    product is below BLAS_MIN, where the BLAS branches would never run anyway.
    """
    scope = dict(globals(), USE_BLAS=False)
    for name in names:
        dispatcher = globals()[name]
        fn = dispatcher.py_func
        clone = types.FunctionType(fn.__code__, scope, fn.__name__ + "_small", fn.__defaults__, fn.__closure__)
        clone.__qualname__ = clone.__name__  # its own entry in numba's cache
        scope[name] = (jit_inline if dispatcher.targetoptions.get("inline") == "always" else jit)(clone)
    return types.SimpleNamespace(**{name: scope[name] for name in names})


SMALL = _without_blas(["forward", "finite_difference", "batch_gradient", "train", "compute_gradient"])

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
go to BLAS as ``Wᵀ A`` on row blocks, without copies: numba_blas's ``gemm``,
with NumPy's BLAS, on offsets into the flat arrays.

The formulas are those of kernels.py, compiled on scalars through numba_math.
A batch's gradient (``load_batch``, ``forward``, the loss, ``backward``) and
``update`` are inlined into ``train``, which runs them back to back;
``compute_gradient`` and ``apply_update`` are the same two halves as separate
entries, so data-parallel training can average G over the ranks in between.
The loss (``output_loss``) is one call per batch; each variant compiles it
with only its network's loss (see ``variant``).

Everything here compiles without numba's reference-counting runtime (NRT):
nothing in it allocates or takes a view, and with
NRT every inlined call that passes arrays costs an atomic increment and
decrement per array, per batch, which numba's pruning of such pairs cannot
remove across the loops in between: about a quarter of the XOR step's time.
"""
import contextlib
import math
import sys
import types
import warnings

import numpy as np
from numba.core import event

from .. import kernels
from ..errors import CompileWarning
from . import numba_math as M
from .numba_blas import NAME as BLAS_NAME
from .numba_blas import gemm

ACTIVATION_CODES = {name: i for i, name in enumerate(kernels.ACTIVATIONS)}
LOSS_CODES = {"mse": 0, "bce": 1, "bce_logits": 2, "softmax_ce": 3}
OPTIMIZER_CODES = {"sgd": 0, "rmsprop": 1, "adam": 2}
SIZE, W_OFFSET, B_OFFSET, ACTIVATION, ROW = range(5)  # rows of `layout`
# Slots of the float64 hyperparameter array `hp`.
LR, MOMENTUM, NESTEROV, RHO, BETA1, BETA2, EPS, WEIGHT_DECAY, MAX_NORM, CLIP_NORM, BCE_EPS, FD_EPS = range(12)
N_HP = 12
OPTIMIZER_SLOTS = slice(LR, WEIGHT_DECAY + 1)  # lr, momentum, nesterov, rho, beta1, beta2, eps, weight_decay
BLAS_MIN = 1 << 15  # multiply-adds in a product from which BLAS beats plain loops
USE_BLAS = True  # False in the variant for networks with no product that large (see SMALL below)
ix = np.uint64  # an unsigned index: numba wraps negative signed indices around, a compare and a select per
# access that stops LLVM from vectorising a loop whose index it cannot prove ≥ 0 (offsets read from layout)


def jit(fn):
    return M.jit(fn, fastmath=M.FASTMATH, _nrt=False)  # no reference counts (see above)


def jit_inline(fn):
    """For functions in hot loops: inlined where called, so the loop can vectorise."""
    return M.jit(fn, fastmath=M.FASTMATH, inline="always", _nrt=False)


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


_act = [jit_inline(forward) for forward, _ in kernels.ACTIVATIONS.values()]
_act_grad = [jit_inline(backward) for _, backward in kernels.ACTIVATIONS.values()]
(_identity, _sigmoid, _tanh, _relu, _leaky_relu, _gelu, _gelu_tanh) = _act
(_identity_g, _sigmoid_g, _tanh_g, _relu_g, _leaky_relu_g, _gelu_g, _gelu_tanh_g) = _act_grad
_squared_error, _squared_error_grad = jit_inline(kernels.squared_error), jit_inline(kernels.squared_error_grad)
_cross_entropy, _cross_entropy_grad = jit_inline(kernels.cross_entropy), jit_inline(kernels.cross_entropy_grad)
_ce_logits, _ce_logits_grad = jit_inline(kernels.cross_entropy_logits), jit_inline(kernels.cross_entropy_logits_grad)
_softmax_ce_terms, _softmax_ce_grad = jit_inline(kernels.softmax_ce_terms), jit_inline(kernels.softmax_ce_grad)
_weight_decayed, _sgd, _rmsprop, _adam = (jit_inline(f) for f in (kernels.weight_decayed, kernels.sgd, kernels.rmsprop,
                                                           kernels.adam))


IDENTITY, SIGMOID, TANH, RELU, LEAKY_RELU, GELU, GELU_TANH = (
    ACTIVATION_CODES[name] for name in ("identity", "sigmoid", "tanh", "relu", "leaky_relu", "gelu", "gelu_tanh"))
MSE, BCE, BCE_LOGITS, SOFTMAX_CE = (LOSS_CODES[name] for name in ("mse", "bce", "bce_logits", "softmax_ce"))
SGD, RMSPROP, ADAM = (OPTIMIZER_CODES[name] for name in ("sgd", "rmsprop", "adam"))

# Which code a compiled variant contains (see ``variant``): numba freezes these globals and prunes the
# branches they switch off before typing them, so a variant compiles only what its network uses.
# Here, in the module itself, everything is on.
IDENTITY_ON = SIGMOID_ON = TANH_ON = RELU_ON = LEAKY_RELU_ON = GELU_ON = GELU_TANH_ON = True
MSE_ON = BCE_ON = BCE_LOGITS_ON = SOFTMAX_CE_ON = True  # the losses
FD_ON = True  # finite-difference gradients
FD_ONLY = False  # finite differences whatever ``gradient`` says: a finite-difference variant, without backprop
LIMITS_ON = True  # gradient clipping and the max-norm limit


@jit_inline
def activate(code, Z, A, start, stop, alpha):
    """A[k] = σ(Z[k]) for k in [start, stop): the branch on the activation sits outside the loop, so the
    loop, a straight run of one formula, vectorises."""
    if SIGMOID_ON and code == SIGMOID:
        for k in range(start, stop):
            A[ix(k)] = _sigmoid(M, Z[ix(k)], alpha)
    elif TANH_ON and code == TANH:
        for k in range(start, stop):
            A[ix(k)] = _tanh(M, Z[ix(k)], alpha)
    elif RELU_ON and code == RELU:
        for k in range(start, stop):
            A[ix(k)] = _relu(M, Z[ix(k)], alpha)
    elif LEAKY_RELU_ON and code == LEAKY_RELU:
        for k in range(start, stop):
            A[ix(k)] = _leaky_relu(M, Z[ix(k)], alpha)
    elif GELU_ON and code == GELU:
        for k in range(start, stop):
            A[ix(k)] = _gelu(M, Z[ix(k)], alpha)
    elif GELU_TANH_ON and code == GELU_TANH:
        for k in range(start, stop):
            A[ix(k)] = _gelu_tanh(M, Z[ix(k)], alpha)
    else:
        for k in range(start, stop):
            A[ix(k)] = Z[ix(k)]


@jit_inline
def activate_grad(code, D, Z, A, start, stop, alpha):
    """D[k] ← D[k] σ'(Z[k]) on [start, stop): ∂C/∂a becomes δ = ∂C/∂z (BP1 at the output, BP2's σ' below)."""
    if SIGMOID_ON and code == SIGMOID:
        for k in range(start, stop):
            D[ix(k)] = _sigmoid_g(M, D[ix(k)], Z[ix(k)], A[ix(k)], alpha)
    elif TANH_ON and code == TANH:
        for k in range(start, stop):
            D[ix(k)] = _tanh_g(M, D[ix(k)], Z[ix(k)], A[ix(k)], alpha)
    elif RELU_ON and code == RELU:
        for k in range(start, stop):
            D[ix(k)] = _relu_g(M, D[ix(k)], Z[ix(k)], A[ix(k)], alpha)
    elif LEAKY_RELU_ON and code == LEAKY_RELU:
        for k in range(start, stop):
            D[ix(k)] = _leaky_relu_g(M, D[ix(k)], Z[ix(k)], A[ix(k)], alpha)
    elif GELU_ON and code == GELU:
        for k in range(start, stop):
            D[ix(k)] = _gelu_g(M, D[ix(k)], Z[ix(k)], A[ix(k)], alpha)
    elif GELU_TANH_ON and code == GELU_TANH:
        for k in range(start, stop):
            D[ix(k)] = _gelu_tanh_g(M, D[ix(k)], Z[ix(k)], A[ix(k)], alpha)
    # identity: σ' = 1, nothing to do


@jit_inline
def forward(P, layout, alphas, m, Z, A):
    """z = Wᵀa + b and a = σ(z), layer by layer, for the m samples in the first rows of A.

    Z and A are flat: unit u of sample r sits at u·m + r. Indexing them, rather than
    slicing views, keeps the loop free of reference counting (each view is an atomic
    increment and decrement, the dearest part of a tiny network's step)."""
    for l in range(layout.shape[1] - 1):
        fan_in, fan_out = layout[SIZE, l], layout[SIZE, l + 1]
        wo, bo, code, alpha = layout[W_OFFSET, l], layout[B_OFFSET, l], layout[ACTIVATION, l], alphas[l]
        inp, out = layout[ROW, l] * m, layout[ROW, l + 1] * m  # where this layer's input and output start
        if USE_BLAS and fan_in * fan_out * m >= BLAS_MIN:  # z = Wᵀ a_in, W stored (fan_in, fan_out)
            gemm(1, l == 0, fan_out, m, fan_in, P, wo, A, inp, Z, out)  # a_in: the batch's rows (m, d) in layer 0
            for j in range(fan_out):
                bias = P[bo + j]
                for r in range(m):
                    Z[out + j * m + r] += bias
        else:
            for j in range(fan_out):
                bias = P[bo + j]
                for r in range(m):
                    Z[out + j * m + r] = bias
            for i in range(fan_in):
                for j in range(fan_out):
                    w = P[wo + i * fan_out + j]
                    for r in range(m):
                        Z[ix(out + j * m + r)] += w * A[ix(inp + i * m + r)]
        activate(code, Z, A, out, out + fan_out * m, alpha)


@jit
def output_loss(loss_code, Y, order, start, k, m, A, D, out, unit, sample, bce_eps, want_grad):
    """Mean loss of the k outputs of m samples, unit j of sample r at A[out + j·unit + r·sample] (the fused
    step's transposed layout: unit = m, sample = 1; rows of samples: unit = 1, sample = k), against target
    row Y[order[start + r]]; with want_grad, D (same places) ← ∂C/∂a, where backpropagation starts (BP1)."""
    total = 0.0
    if SOFTMAX_CE_ON and loss_code == SOFTMAX_CE:  # softmax cross-entropy over the k logits of each sample
        for r in range(m):
            row, first = order[start + r], out + r * sample
            top = A[first]
            for j in range(1, k):
                top = max(top, A[first + j * unit])
            norm = 0.0
            for j in range(k):
                norm += M.exp(A[first + j * unit] - top)
            for j in range(k):
                a = A[first + j * unit]
                total += _softmax_ce_terms(M, a, top, norm, Y[row, j])
                if want_grad:
                    D[first + j * unit] = _softmax_ce_grad(M, a, top, norm, Y[row, j], m)  # (softmax − y) / m
        return total / m
    count = m * k
    if MSE_ON and loss_code == MSE:  # a loop of its own, without the others' branches: it vectorises
        for r in range(m):
            row, first = order[start + r], out + r * sample
            for j in range(k):
                y, a = Y[row, j], A[ix(first + j * unit)]
                total += _squared_error(M, a, y)
                if want_grad:
                    D[ix(first + j * unit)] = _squared_error_grad(M, a, y) / count
        return total / count
    for r in range(m):  # the two binary cross-entropies
        row = order[start + r]
        for j in range(k):
            at = out + j * unit + r * sample
            y, a = Y[row, j], A[at]
            if BCE_ON and loss_code == BCE:
                p = M.clip(a, bce_eps, 1.0 - bce_eps)
                total += _cross_entropy(M, p, y)
                if want_grad:
                    D[at] = _cross_entropy_grad(M, p, y) / count
            elif BCE_LOGITS_ON:
                total += _ce_logits(M, a, y)
                if want_grad:
                    D[at] = _ce_logits_grad(M, a, y) / count
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
    L = layout.shape[1] - 1
    k, out = layout[SIZE, L], layout[ROW, L] * m  # the output rows; D stays untouched (no gradient wanted)
    forward(P, layout, alphas, m, Z, A)
    base = output_loss(loss_code, Y, order, start, k, m, A, D, out, m, 1, bce_eps, False)
    for q in range(P.shape[0]):
        old = P[q]
        P[q] = old + eps
        forward(P, layout, alphas, m, Z, A)
        plus = output_loss(loss_code, Y, order, start, k, m, A, D, out, m, 1, bce_eps, False)
        if central:
            P[q] = old - eps
            forward(P, layout, alphas, m, Z, A)
            minus = output_loss(loss_code, Y, order, start, k, m, A, D, out, m, 1, bce_eps, False)
            G[q] = (plus - minus) / (2.0 * eps)
        else:
            G[q] = (plus - base) / eps
        P[q] = old
    return base


@jit_inline
def load_batch(X, order, start, m, layout, A):
    """The m rows order[start:start+m] of X into the first rows of A: transposed, or as rows (m, d) when the
    first layer's product goes to BLAS, which reads them transposed without a copy."""
    d = X.shape[1]
    if USE_BLAS and d * layout[SIZE, 1] * m >= BLAS_MIN:
        for r in range(m):
            row = order[start + r]
            for i in range(d):
                A[r * d + i] = X[row, i]
    else:  # 16 samples at a time, so that both the rows read and the rows written stay in cache
        for r0 in range(0, m, 16):
            for i in range(d):
                for r in range(r0, r0 + 16 if r0 + 16 < m else m):
                    A[i * m + r] = X[order[start + r], i]


@jit_inline
def backward(P, G, layout, alphas, m, Z, A, D):
    """G ← ∂C/∂θ, from D holding ∂C/∂a of the output rows (where BP1 leaves it), layer by layer down."""
    L = layout.shape[1] - 1
    for l in range(L - 1, -1, -1):
        fan_in, fan_out = layout[SIZE, l], layout[SIZE, l + 1]
        wo, bo, code, alpha = layout[W_OFFSET, l], layout[B_OFFSET, l], layout[ACTIVATION, l], alphas[l]
        inp, out = layout[ROW, l] * m, layout[ROW, l + 1] * m
        activate_grad(code, D, Z, A, out, out + fan_out * m, alpha)  # δ = ∂C/∂a ⊙ σ'(z)
        for j in range(fan_out):
            s = 0.0
            for r in range(m):
                s += D[out + j * m + r]
            G[bo + j] = s  # BP3: ∂C/∂b = δ, summed over the batch
        big = USE_BLAS and fan_in * fan_out * m >= BLAS_MIN
        if USE_BLAS and big:  # BP4: ∂C/∂W = a_in δᵀ, δ stored (fan_out, m), a_in as in forward
            gemm(l == 0, 1, fan_in, fan_out, m, A, inp, D, out, G, wo)
            if l > 0:  # BP2: ∂C/∂a of the layer below = W δ
                gemm(0, 0, fan_in, m, fan_out, P, wo, D, out, D, inp)
        else:
            for i in range(fan_in):
                for j in range(fan_out):
                    s = 0.0
                    for r in range(m):
                        s += A[ix(inp + i * m + r)] * D[ix(out + j * m + r)]
                    G[wo + i * fan_out + j] = s
            if l > 0:  # BP2: ∂C/∂a of the layer below = W δ
                for k in range(inp, out):
                    D[k] = 0.0
                for i in range(fan_in):
                    for j in range(fan_out):
                        w = P[wo + i * fan_out + j]
                        for r in range(m):
                            D[ix(inp + i * m + r)] += w * D[ix(out + j * m + r)]


@jit_inline
def update(P, G, S1, S2, layout, opt_code, hp, t):
    """Step t of the optimiser with gradient G (clipped first when hp[CLIP_NORM] > 0), then the max-norm limit."""
    lr, wd = hp[LR], hp[WEIGHT_DECAY]
    if LIMITS_ON and hp[CLIP_NORM] > 0.0:
        clip_gradient(G, hp[CLIP_NORM])
    # kernels.py's formulas on every parameter.
    if opt_code == RMSPROP:
        for q in range(P.shape[0]):
            g = _weight_decayed(M, P[q], G[q], wd)
            P[q], S1[q] = _rmsprop(M, P[q], g, S1[q], lr, hp[RHO], hp[EPS])
    elif opt_code == ADAM:
        bias1, bias2 = 1.0 - hp[BETA1] ** t, 1.0 - hp[BETA2] ** t
        for q in range(P.shape[0]):
            g = _weight_decayed(M, P[q], G[q], wd)
            P[q], S1[q], S2[q] = _adam(M, P[q], g, S1[q], S2[q], lr, hp[BETA1], hp[BETA2], hp[EPS], bias1, bias2)
    elif hp[MOMENTUM] == 0.0:  # plain SGD: w ← w − lr g
        for q in range(P.shape[0]):
            P[q] = P[q] - lr * _weight_decayed(M, P[q], G[q], wd)
    else:
        momentum, nesterov = hp[MOMENTUM], hp[NESTEROV] != 0.0
        for q in range(P.shape[0]):
            g = _weight_decayed(M, P[q], G[q], wd)
            P[q], S1[q] = _sgd(M, P[q], g, S1[q], lr, momentum, nesterov)
    if LIMITS_ON and hp[MAX_NORM] > 0.0:
        limit_norms(P, layout, hp[MAX_NORM])


@jit
def train(X, Y, order, batch_size, repeats, P, G, S1, S2, layout, alphas, loss_code, opt_code, hp, t, gradient,
          Z, A, D, losses, lrs):
    """``repeats`` passes over the rows of X, Y in ``order``, one training step per batch.

    gradient: 0 backprop, 1 forward differences, 2 central differences.
    Z, A, D: flat work buffers of at least Σ units × batch_size.
    losses[b] ← the loss of batch b (before its update) in the last pass.
    lrs: the learning rate of each step of the call (a schedule's), or empty to keep hp[LR].
    Returns the optimiser's step count t (Adam's bias correction counts from 1).
    """
    n, L = order.shape[0], layout.shape[1] - 1
    n_batches = (n + batch_size - 1) // batch_size
    for repeat in range(repeats):
        for b in range(n_batches):
            start = b * batch_size
            # min(batch_size, n - start), written out (numba compiles a function for each integer min() it
            # meets); the short last batch uses the same buffers, laid out for its width
            m = batch_size if batch_size < n - start else n - start
            t += 1
            # The batch's gradient in parts, inlined one by one (as compute_gradient's): numba's inliner copies
            # a callee's IR block by block, each time with every variable of the callee, so one large callee
            # costs its blocks times its variables (1.2 s of a 9 s first compile, 2-core AMD EPYC family 25)
            if repeat == 0 or n_batches > 1:  # one batch, repeated, stays loaded
                load_batch(X, order, start, m, layout, A)
            if FD_ON and (FD_ONLY or gradient != 0):
                losses[b] = finite_difference(Y, order, start, m, P, G, layout, alphas, loss_code, hp, gradient == 2,
                                              Z, A, D)
            else:
                forward(P, layout, alphas, m, Z, A)
                losses[b] = output_loss(loss_code, Y, order, start, layout[SIZE, L], m, A, D, layout[ROW, L] * m, m,
                                        1, hp[BCE_EPS], True)
                backward(P, G, layout, alphas, m, Z, A, D)
            if lrs.shape[0] > 0:
                hp[LR] = lrs[repeat * n_batches + b]
            update(P, G, S1, S2, layout, opt_code, hp, t)
    return t


@jit
def compute_gradient(X, Y, order, P, G, layout, alphas, loss_code, hp, gradient, Z, A, D):
    """Half a step, for data-parallel training: G ← ∂C/∂θ on rows ``order`` of X, Y; returns their mean loss.

    gradient: 0 backprop, 1 forward differences, 2 central differences (as train's)."""
    m, L = order.shape[0], layout.shape[1] - 1
    load_batch(X, order, 0, m, layout, A)
    if FD_ON and (FD_ONLY or gradient != 0):
        return finite_difference(Y, order, 0, m, P, G, layout, alphas, loss_code, hp, gradient == 2, Z, A, D)
    forward(P, layout, alphas, m, Z, A)
    loss = output_loss(loss_code, Y, order, 0, layout[SIZE, L], m, A, D, layout[ROW, L] * m, m, 1, hp[BCE_EPS], True)
    backward(P, G, layout, alphas, m, Z, A, D)
    return loss


@jit
def apply_update(P, G, S1, S2, layout, opt_code, hp, t):
    """The other half: step t of the optimiser with the gradient in G (averaged over the ranks by then)."""
    update(P, G, S1, S2, layout, opt_code, hp, t)


# The functions a variant recompiles with its own flags, callees before their callers.
VARIANT_FUNCTIONS = ("output_loss", "activate", "activate_grad", "forward", "finite_difference", "load_batch",
                     "backward", "update", "train", "compute_gradient", "apply_update")
ALWAYS_ON = ("identity",)  # every variant has it: the output layer of most networks
_variants: dict = {}


def variant_key(activations, loss, gradient, blas, limits=False):
    """The key of the variant for a network with these activation names, this loss (a name in LOSS_CODES), this
    gradient ("backprop" or "finite_difference"), whether a product in its step is large enough for BLAS, and
    whether the step clips its gradient or limits weight norms (clip_norm, max_norm)."""
    return (tuple(sorted(set(activations) - set(ALWAYS_ON))), loss, gradient != "backprop", bool(blas),
            bool(limits))


def variant(key):
    """numba_mlp's training functions compiled with only what ``key`` (see variant_key) needs.

    The flags switched off are frozen to False in a copy of this module's globals, so
    numba prunes those branches before typing them. A variant has only the activations
    its network has, only its loss, no finite differences for backprop and no backprop
    for finite differences, no BLAS calls for networks whose products are all small,
    and no clipping or max-norm limit unless the step has them. Measured on 2-core AMD
    EPYCs: the limits were 0.6-1.5 s of a 4.4-6.8 s first compile (with AVX-512); the
    three other losses 1.0-1.1 s of 5.1-6.7 s, and backprop in a finite-difference step
    2 s of 6.6-6.8 s (family 25). A step without BLAS calls has no path that raises,
    which keeps the tiny networks' loop lean. Each variant has its own names in numba's
    cache. Every optimiser stays in (a few scalar loops, about 0.4 s of a 4 s first
    compile on the family 25 EPYC): as one shared function, the call cost the XOR step
    50-60 ns of its 330-360, and in the key it would multiply the variants that
    ``xpnet warmup`` compiles by four.
    """
    if key not in _variants:
        activations, loss, fd, blas, limits = key
        flags = {f"{name.upper()}_ON": name in activations or name in ALWAYS_ON for name in ACTIVATION_CODES}
        flags.update({f"{name.upper()}_ON": name == loss for name in LOSS_CODES})
        flags.update(FD_ON=fd, FD_ONLY=fd, USE_BLAS=blas, LIMITS_ON=limits)
        suffix = "_".join([*activations, loss, "fd" if fd else "bp", BLAS_NAME if blas else "loops",
                           *(["limits"] if limits else [])])
        scope = dict(globals(), **flags)
        for name in VARIANT_FUNCTIONS:
            dispatcher = globals()[name]
            fn = dispatcher.py_func
            clone = types.FunctionType(fn.__code__, scope, f"{fn.__name__}__{suffix}", fn.__defaults__,
                                       fn.__closure__)
            clone.__qualname__ = clone.__name__  # its own entry in numba's cache
            inline = dispatcher.targetoptions.get("inline") == "always"
            scope[name] = (jit_inline if inline else jit)(clone)
        _variants[key] = types.SimpleNamespace(key=key, **{name: scope[name] for name in VARIANT_FUNCTIONS})
    return _variants[key]


WARMUP_LOSSES = {"identity": ("softmax_ce", "mse", "bce_logits"), "sigmoid": ("bce", "mse")}  # per output


def every_variant_key():
    """The keys ``xpnet warmup`` compiles: each activation in the hidden layers with an identity output and the
    losses that take its values (WARMUP_LOSSES) or a sigmoid output with BCE or MSE (or the same activation
    throughout), backprop and finite differences, with and without BLAS, with and without clipping and the
    max-norm limit."""
    keys = [variant_key([hidden, output], loss, gradient, blas, limits) for hidden in ACTIVATION_CODES
            for output, losses in WARMUP_LOSSES.items() for loss in losses
            for gradient in ("backprop", "finite_difference") for blas in (False, True) for limits in (False, True)]
    return list(dict.fromkeys(keys))


# ---- the value checks of every step's input, one compiled pass each ---------------------

@jit
def first_nonfinite(x):
    """Index of the first NaN or ±inf in the flat array x, or −1."""
    for k in range(x.shape[0]):
        if not math.isfinite(x[k]):
            return k
    return -1


@jit
def one_hot(labels, k, T):
    """T[r] ← the one-hot row of integer class label r; returns the first r whose label is outside [0, k), or −1."""
    for r in range(labels.shape[0]):
        c = labels[r]
        if c < 0 or c >= k:
            return r
        for j in range(k):
            T[r, j] = 0.0
        T[r, c] = 1.0
    return -1


# ---- saying so while compiling -----------------------------------------------------------

NOTICE = ("xpnet: numba is compiling the training step for this network, once (a few seconds); later runs load "
          "it from numba's cache, and `xpnet warmup` compiles every variant ahead of time")
KERNELS_NOTICE = ("xpnet: numba is compiling the backend's kernels for this network's layers, once (a few seconds); "
                  "later runs load them from numba's cache")
_announced = False


class _Announce(event.Listener):
    """Warns once per process when numba starts compiling (numba fires no event when it loads from its cache)."""

    def __init__(self, message):
        self.message = message

    def on_start(self, ev):
        global _announced
        if not _announced:
            _announced = True
            frame = sys._getframe(1)  # blame the user's line, the first outside xpnet and numba
            while frame.f_back is not None and frame.f_globals.get("__name__", "").split(".")[0] in ("xpnet", "numba", "contextlib"):
                frame = frame.f_back
            warnings.warn_explicit(self.message, CompileWarning, frame.f_code.co_filename, frame.f_lineno,
                                   module=frame.f_globals.get("__name__"), registry={})

    def on_end(self, ev):
        pass


def compile_notice(enabled=True, message=NOTICE):
    """A context in which a numba compile (not a cache load) warns once per process; nothing if not enabled."""
    if not enabled or _announced:
        return contextlib.nullcontext()
    return event.install_listener("numba:compile", _Announce(message))

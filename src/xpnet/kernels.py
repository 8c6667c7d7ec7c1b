"""The elementwise math of xpnet, written once.

Every function takes ``xp`` first: an array namespace (NumPy, CuPy, any Array
API namespace) extended with ``erf``, or the scalar ``math``-like namespace
the numba backend compiles against. Only elementwise calls are used here
(``exp``, ``abs``, ``where``, ``tanh``, ``sqrt``, ``erf``, arithmetic), so
the same function runs on whole arrays, is fused by ``cupy.fuse``, or is
``njit``-compiled on scalars. Constants are Python floats, which the Array
API and NumPy 2 keep in the array's dtype.

Activations come in pairs: ``f(xp, z, alpha) -> a`` and
``f_grad(xp, grad_a, z, a, alpha) -> grad_z``, the factor σ'(z) that BP1 and
BP2 multiply the incoming error by.
"""
import math

INV_SQRT2 = 1.0 / math.sqrt(2.0)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)
GELU_TANH_C = 0.044715


def identity(xp, z, alpha):
    return z


def identity_grad(xp, grad_a, z, a, alpha):
    return grad_a


def sigmoid(xp, z, alpha):
    # exp of -|z| only, so it never overflows: σ(z) = 1/(1+e^-z) for z ≥ 0, e^z/(1+e^z) below.
    e = xp.exp(-xp.abs(z))
    s = 1.0 / (1.0 + e)
    return xp.where(z >= 0, s, e * s)


def sigmoid_grad(xp, grad_a, z, a, alpha):
    return grad_a * a * (1.0 - a)


def tanh(xp, z, alpha):
    return xp.tanh(z)


def tanh_grad(xp, grad_a, z, a, alpha):
    return grad_a * (1.0 - a * a)


def relu(xp, z, alpha):
    return xp.where(z > 0, z, 0.0 * z)  # 0·z keeps NaN a NaN


def relu_grad(xp, grad_a, z, a, alpha):
    return xp.where(z > 0, grad_a, 0.0 * grad_a)


def leaky_relu(xp, z, alpha):
    return xp.where(z > 0, z, alpha * z)


def leaky_relu_grad(xp, grad_a, z, a, alpha):
    return xp.where(z > 0, grad_a, alpha * grad_a)


def gelu(xp, z, alpha):
    # GELU(z) = z Φ(z), Φ the standard normal CDF.
    return z * (0.5 + 0.5 * xp.erf(z * INV_SQRT2))


def gelu_grad(xp, grad_a, z, a, alpha):
    # d/dz z Φ(z) = Φ(z) + z φ(z)
    cdf = 0.5 + 0.5 * xp.erf(z * INV_SQRT2)
    pdf = INV_SQRT_2PI * xp.exp(-0.5 * z * z)
    return grad_a * (cdf + z * pdf)


def gelu_tanh(xp, z, alpha):
    # The tanh approximation: z/2 (1 + tanh(√(2/π) (z + 0.044715 z³))).
    return 0.5 * z * (1.0 + xp.tanh(SQRT_2_OVER_PI * (z + GELU_TANH_C * z * z * z)))


def gelu_tanh_grad(xp, grad_a, z, a, alpha):
    t = xp.tanh(SQRT_2_OVER_PI * (z + GELU_TANH_C * z * z * z))
    dinner = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_TANH_C * z * z)
    return grad_a * (0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * dinner)


ACTIVATIONS = {
    "identity": (identity, identity_grad),
    "sigmoid": (sigmoid, sigmoid_grad),
    "tanh": (tanh, tanh_grad),
    "relu": (relu, relu_grad),
    "leaky_relu": (leaky_relu, leaky_relu_grad),
    "gelu": (gelu, gelu_grad),
    "gelu_tanh": (gelu_tanh, gelu_tanh_grad),
}
RELU_FAMILY = ("relu", "leaky_relu", "gelu", "gelu_tanh")


def erf_series(xp, x, terms=100):
    """erf to float64 accuracy from elementwise operations alone.

    erf(x) = 2/√π e^{-x²} Σₙ 2ⁿ x^{2n+1} / (1·3·…·(2n+1)), a series of
    positive terms (no cancellation), summed by Horner's rule; |x| is capped
    at 6, where erf is 1 to within 2e-17. For namespaces with no ``erf``.
    """
    x = xp.clip(x, -6.0, 6.0)
    two_x2 = 2.0 * x * x
    acc = 1.0 + 0.0 * x
    for k in range(terms, 0, -1):
        acc = 1.0 + acc * two_x2 / (2.0 * k + 1.0)
    return TWO_OVER_SQRT_PI * xp.exp(-x * x) * x * acc


# Loss terms, elementwise; the backends sum them and divide by the count.

def squared_error(xp, pred, target):
    return (pred - target) * (pred - target)


def squared_error_grad(xp, pred, target):
    return 2.0 * (pred - target)


def cross_entropy(xp, p, target):
    """−(t log p + (1−t) log(1−p)) on probabilities already clipped away from 0 and 1."""
    return -(target * xp.log(p) + (1.0 - target) * xp.log(1.0 - p))


def cross_entropy_grad(xp, p, target):
    return (p - target) / (p * (1.0 - p))


def cross_entropy_logits(xp, z, target):
    """The same from logits, stably: max(z, 0) − z t + log(1 + e^{−|z|})."""
    return xp.maximum(z, 0.0) - z * target + xp.log1p(xp.exp(-xp.abs(z)))


def cross_entropy_logits_grad(xp, z, target):
    e = xp.exp(-xp.abs(z))  # σ(z) − t, σ as in sigmoid() (no calls between kernels: numba compiles each alone)
    s = 1.0 / (1.0 + e)
    return xp.where(z >= 0, s, e * s) - target


# Softmax cross-entropy, elementwise once each row's max and Σ e^{z−max} are
# known (the two row reductions stay with the caller). The loss is the sum of
# the terms divided by ``count``, the number of samples.

def softmax_ce_terms(xp, z, row_max, row_sum, onehot):
    """t · (log Σ e^z − z), with z shifted by its row max so nothing overflows."""
    return onehot * (xp.log(row_sum) - (z - row_max))


def softmax_ce_grad(xp, z, row_max, row_sum, onehot, count):
    """BP1 for softmax + cross-entropy: ∂C/∂z = (softmax(z) − t) / count."""
    return (xp.exp(z - row_max) / row_sum - onehot) / count


# Optimiser updates: new values from old, elementwise. `g` already holds the
# L2 weight-decay term (g = ∂C/∂w + λ w), added by weight_decayed().

def weight_decayed(xp, param, grad, weight_decay):
    return grad + weight_decay * param


def sgd(xp, param, g, velocity, lr, momentum, nesterov):
    """SGD as PyTorch writes it: v ← μ v + g; w ← w − lr (g + μ v if nesterov else v)."""
    velocity = momentum * velocity + g
    direction = g + momentum * velocity if nesterov else velocity
    return param - lr * direction, velocity


def rmsprop(xp, param, g, square_avg, lr, rho, eps):
    """s ← ρ s + (1−ρ) g²; w ← w − lr g / (√s + ε)."""
    square_avg = rho * square_avg + (1.0 - rho) * g * g
    return param - lr * g / (xp.sqrt(square_avg) + eps), square_avg


def adam(xp, param, g, m, v, lr, beta1, beta2, eps, bias1, bias2):
    """m ← β₁m + (1−β₁)g; v ← β₂v + (1−β₂)g²; w ← w − lr (m/bias1) / (√(v/bias2) + ε).

    bias1 = 1 − β₁ᵗ and bias2 = 1 − β₂ᵗ are the bias corrections, computed once per step.
    """
    m = beta1 * m + (1.0 - beta1) * g
    v = beta2 * v + (1.0 - beta2) * g * g
    return param - lr * (m / bias1) / (xp.sqrt(v / bias2) + eps), m, v


# Batch normalisation, per channel: mean, inv_std, gamma and beta broadcast against x.

def batch_norm(xp, x, mean, inv_std, gamma, beta):
    """x̂ = (x − μ) / √(σ² + ε), y = γ x̂ + β; returns (x̂, y)."""
    xhat = (x - mean) * inv_std
    return xhat, gamma * xhat + beta


def batch_norm_grad(xp, grad_y, xhat, inv_std, gamma, mean_dy, mean_dy_xhat):
    """∂C/∂x = γ/σ · (∂C/∂y − mean(∂C/∂y) − x̂ · mean(∂C/∂y · x̂)), the means over the batch (norm.py derives it)."""
    return gamma * inv_std * (grad_y - mean_dy - xhat * mean_dy_xhat)

"""Normalisation: BatchNorm (per channel, over the batch) and LayerNorm (per sample, over its features).

Derivation of the compact BatchNorm backward. For one channel, with m values
x_i in the batch (every sample and spatial position): μ = Σ x_i / m,
σ² = Σ (x_i − μ)² / m, σ = √(σ² + ε), x̂_i = (x_i − μ)/σ, y_i = γ x̂_i + β.
Write g_i = ∂C/∂y_i. Then ∂C/∂β = Σ g_i and ∂C/∂γ = Σ g_i x̂_i, and ∂C/∂x̂_i = γ g_i.
x_j reaches C through x̂_j directly, and through μ and σ (which every x̂_i uses):

    ∂x̂_i/∂x_j = (δ_ij − 1/m)/σ − (x_i − μ)/σ² · ∂σ/∂x_j,   ∂σ/∂x_j = (x_j − μ)/(m σ) = x̂_j/m,

so ∂x̂_i/∂x_j = (δ_ij − 1/m − x̂_i x̂_j / m)/σ and

    ∂C/∂x_j = Σ_i γ g_i ∂x̂_i/∂x_j = γ/σ · (g_j − (1/m) Σ_i g_i − x̂_j (1/m) Σ_i g_i x̂_i).

Three terms: the gradient itself, minus its mean, minus x̂ times the mean of g x̂
(these two sums are ∂C/∂β and ∂C/∂γ, so the backward pass needs nothing more).
LayerNorm is the same computation per sample over its features, with γ inside g.
"""
import numbers

import numpy as np

from ..errors import ConfigError, ShapeError
from .base import Layer, register


def _positive(layer, name, value, upper=None):
    if not (isinstance(value, numbers.Real) and not isinstance(value, bool) and value > 0
            and (upper is None or value <= upper)):
        bound = f" and at most {upper}" if upper is not None else ""
        raise ConfigError(f"{layer} {name} must be a number above 0{bound}, got {value!r}")
    return float(value)


@register
class BatchNorm(Layer):
    """Batch normalisation over the channel axis of (N, C), (N, C, L) or (N, C, H, W), as torch's BatchNorm1d/2d.

    Training: x̂ = (x − μ_B)/√(σ²_B + ε) with the batch's per-channel mean and (biased)
    variance, y = γ x̂ + β; the running statistics move by ``momentum``: r ← (1 − m) r + m μ_B,
    and the running variance takes the unbiased σ²_B · M/(M − 1) (M values per channel), as PyTorch.
    Inference: the running statistics in place of the batch's.

    Backward (derived at the top of this file): ∂C/∂β = Σ g, ∂C/∂γ = Σ g x̂,
    ∂C/∂x = γ/σ (g − mean(g) − x̂ mean(g x̂)), g = ∂C/∂y. In inference, ∂C/∂x = γ g / σ.

    Under data-parallel training (xn.distributed) the batch statistics and the two
    backward means are summed over every rank (one Allreduce each way), so N ranks
    normalise exactly as one process with the whole batch would.
    """

    param_names = ("gamma", "beta")
    buffer_names = ("running_mean", "running_var")

    def __init__(self, momentum=0.1, eps=1e-5):
        super().__init__()
        self.momentum = _positive("BatchNorm", "momentum", momentum, upper=1.0)
        self.eps = _positive("BatchNorm", "eps", eps)
        self.allreduce = None

    def config(self):
        return {"momentum": self.momentum, "eps": self.eps}

    def synchronise(self, allreduce):
        self.allreduce = allreduce
        return True

    def build(self, input_shape, rng):
        if len(input_shape) not in (1, 2, 3):
            raise ShapeError(f"BatchNorm takes samples of shape (C,), (C, L) or (C, H, W), got {input_shape}")
        channels = input_shape[0]
        self.add_param("gamma", np.ones(channels))
        self.add_param("beta", np.zeros(channels))
        self.add_buffer("running_mean", np.zeros(channels))
        self.add_buffer("running_var", np.ones(channels))
        return input_shape

    def _batch_statistics(self, x3):
        """(μ, σ², values per channel in the whole batch); over every rank when synchronised."""
        xp, backend = self.xp, self.backend
        local = x3.shape[0] * x3.shape[2]
        if self.allreduce is None:
            if local < 2:
                raise ShapeError(f"BatchNorm needs more than 1 value per channel in training, got a batch of "
                                 f"shape {tuple(x3.shape[:2])}: use a larger batch")
            mean, var = backend.batch_norm_statistics(x3)
            return mean, var, local
        # Sums of x − r (r: the running mean, the same on every rank) lose no digits to cancellation
        # once r is near the mean, and take one Allreduce of [Σ(x − r), Σ(x − r)², count].
        shift = self.buffers["running_mean"]
        centred = x3 - xp.reshape(shift, (1, -1, 1))
        count = xp.asarray([local], dtype=x3.dtype, device=backend.device)
        total = self.allreduce(xp.concat([xp.sum(centred, axis=(0, 2)), xp.sum(centred * centred, axis=(0, 2)),
                                          count]))
        channels, count = x3.shape[1], total[-1]
        offset = total[:channels] / count
        return shift + offset, total[channels:2 * channels] / count - offset * offset, count

    def forward(self, x, training=False):
        backend, xp = self.backend, self.xp
        gamma, beta = self.params["gamma"], self.params["beta"]
        x3 = xp.reshape(x, (x.shape[0], x.shape[1], -1))  # (N, C, S): statistics over n and s
        if training:
            mean, var, count = self._batch_statistics(x3)
            running_mean, running_var = self.buffers["running_mean"], self.buffers["running_var"]
            # In place: compiled steps and CUDA graphs hold these very arrays.
            running_mean[...] = (1.0 - self.momentum) * running_mean + self.momentum * mean
            running_var[...] = (1.0 - self.momentum) * running_var + self.momentum * var * (count / (count - 1))
        else:
            mean, var, count = self.buffers["running_mean"], self.buffers["running_var"], None
        inv_std = 1.0 / xp.sqrt(var + self.eps)
        y, xhat = backend.batch_norm_forward(x3, mean, inv_std, gamma, beta)  # x̂ = (x − μ)/σ, y = γ x̂ + β
        local = x3.shape[0] * x3.shape[2]

        def backward(grad_y, need_grad_x=True):
            grad_y3 = xp.reshape(grad_y, x3.shape)
            sum_dy, sum_dy_xhat = backend.batch_norm_sums(grad_y3, xhat)
            self.grads["beta"], self.grads["gamma"] = sum_dy, sum_dy_xhat  # ∂C/∂β = Σ g, ∂C/∂γ = Σ g x̂
            if not need_grad_x:
                return None
            if not training:  # μ and σ are constants: ∂C/∂x = γ g / σ
                zero = xp.zeros_like(sum_dy)
                return xp.reshape(backend.batch_norm_backward(grad_y3, xhat, inv_std, gamma, zero, zero), x.shape)
            if self.allreduce is None:
                mean_dy, mean_dy_xhat = sum_dy / count, sum_dy_xhat / count
            else:
                # The whole batch's C is Σ_ranks share · C_rank, share = this rank's part of the batch: its
                # ∂C/∂y is share · g. Sum those over the ranks; ∂C/∂x here is then returned ÷ share, since
                # the data-parallel step multiplies every gradient below by share again.
                share = local / count
                total = self.allreduce(xp.concat([sum_dy, sum_dy_xhat]) * share)
                channels = sum_dy.shape[0]
                mean_dy, mean_dy_xhat = total[:channels] / (count * share), total[channels:] / (count * share)
            grad_x = backend.batch_norm_backward(grad_y3, xhat, inv_std, gamma, mean_dy, mean_dy_xhat)  # 3 terms
            return xp.reshape(grad_x, x.shape)

        backward.saved = {"x": x, "xhat": xhat}
        return xp.reshape(y, x.shape), backward


@register
class LayerNorm(Layer):
    """Layer normalisation over each sample's features (every axis but the batch), as torch's LayerNorm.

    x̂ = (x − μ)/√(σ² + ε) with the sample's own mean and biased variance, y = γ ⊙ x̂ + β,
    γ and β of one sample's shape. The same in training and inference.

    Backward: ∂C/∂β = Σ_n g, ∂C/∂γ = Σ_n g ⊙ x̂; with h = γ ⊙ g,
    ∂C/∂x = (h − mean(h) − x̂ mean(h x̂))/σ, the means over the sample's features
    (BatchNorm's three terms per sample; see the top of this file).
    """

    param_names = ("gamma", "beta")

    def __init__(self, eps=1e-5):
        super().__init__()
        self.eps = _positive("LayerNorm", "eps", eps)

    def config(self):
        return {"eps": self.eps}

    def build(self, input_shape, rng):
        self.add_param("gamma", np.ones(input_shape))
        self.add_param("beta", np.zeros(input_shape))
        return input_shape

    def forward(self, x, training=False):
        backend, xp = self.backend, self.xp
        gamma, beta = xp.reshape(self.params["gamma"], (-1,)), xp.reshape(self.params["beta"], (-1,))
        n = x.shape[0]
        rows = xp.reshape(x, (1, n, -1))  # the batch-norm kernels' (1, C, S) layout: a "channel" per sample
        features = rows.shape[2]
        mean, var = backend.batch_norm_statistics(rows)
        inv_std = 1.0 / xp.sqrt(var + self.eps)
        ones, zeros = xp.ones_like(mean), xp.zeros_like(mean)
        _, xhat = backend.batch_norm_forward(rows, mean, inv_std, ones, zeros)
        xhat = xhat[0, ...]
        y = xhat * gamma + beta

        def backward(grad_y, need_grad_x=True):
            grad_y = xp.reshape(grad_y, xhat.shape)
            self.grads["beta"] = xp.reshape(xp.sum(grad_y, axis=0), self.params["beta"].shape)
            self.grads["gamma"] = xp.reshape(xp.sum(grad_y * xhat, axis=0), self.params["gamma"].shape)
            if not need_grad_x:
                return None
            h = xp.reshape(grad_y * gamma, rows.shape)  # ∂C/∂x̂
            xhat3 = xp.reshape(xhat, rows.shape)
            sum_h, sum_h_xhat = backend.batch_norm_sums(h, xhat3)
            grad_x = backend.batch_norm_backward(h, xhat3, inv_std, ones, sum_h / features, sum_h_xhat / features)
            return xp.reshape(grad_x, x.shape)

        return xp.reshape(y, x.shape), backward

"""Named architectures built from layers, each defined in one place."""
from . import layers as L
from .errors import ConfigError
from .network import Sequential


def lenet(input_shape=(1, 28, 28), classes=10, activation="relu", batch_norm=False, dtype="float32", seed=0,
          backend=None):
    """LeNet-5 for channels-first images: two 5×5 convolutions with 2×2 max pooling, then 120-84-classes.

    On 28×28 inputs the first convolution pads by 2, as LeNet-5 on MNIST does; on
    images under 20 pixels (the 8×8 digits) the convolutions are 3×3 with padding 1
    and the second pooling is left out, so the net still fits the image.
    ``batch_norm=True`` puts a BatchNorm after each convolution.

    >>> import xpnet as xn
    >>> xn.models.lenet((1, 28, 28)).output_shape
    (10,)
    >>> xn.models.lenet((1, 8, 8)).output_shape
    (10,)
    """
    if not (isinstance(input_shape, (tuple, list)) and len(input_shape) == 3):
        raise ConfigError(f"lenet takes images of shape (channels, height, width), got {input_shape!r}")
    small = min(input_shape[1:]) < 20
    kernel, padding = (3, 1) if small else (5, 2)
    norm = (lambda: [L.BatchNorm()]) if batch_norm else list  # noqa: E731
    stack = [L.Conv2D(6, kernel, padding=padding, activation=activation), *norm(), L.MaxPool2D(2),
             L.Conv2D(16, kernel, padding=1 if small else 0, activation=activation), *norm(),
             *([] if small else [L.MaxPool2D(2)]),
             L.Flatten(), L.Dense(120, activation=activation), L.Dense(84, activation=activation), L.Dense(classes)]
    return Sequential(stack, input_shape=tuple(input_shape), dtype=dtype, seed=seed, backend=backend)

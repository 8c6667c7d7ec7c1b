"""Layers with their forward and backward passes written by hand, and the protocol a layer of your own follows.

>>> import numpy as np, xpnet as xn
>>> @xn.layers.register
... class Scale(xn.layers.Layer):
...     param_names = ("s",)
...     def build(self, input_shape, rng):
...         self.add_param("s", np.ones(input_shape[-1:]))
...         return input_shape
...     def forward(self, x, training=False):
...         s = self.params["s"]
...         def backward(grad_y, need_grad_x=True):
...             self.grads["s"] = self.xp.sum(grad_y * x, axis=0)
...             return grad_y * s
...         return x * s, backward
>>> net = xn.Sequential([Scale(), xn.layers.Dense(3)], input_shape=(2,))
>>> net.predict([[1.0, 2.0]]).shape
(1, 3)
"""
from .base import REGISTRY, Layer, get, register
from .conv import Conv1D, Conv2D
from .norm import BatchNorm, LayerNorm
from .pool import AvgPool1D, AvgPool2D, GlobalAvgPool, MaxPool1D, MaxPool2D
from .dense import Dense
from .dropout import Dropout
from .reshape import Flatten, Reshape

__all__ = ["REGISTRY", "AvgPool1D", "AvgPool2D", "BatchNorm", "Conv1D", "Conv2D", "Dense", "Dropout", "Flatten",
           "GlobalAvgPool", "Layer", "LayerNorm", "MaxPool1D", "MaxPool2D", "Reshape", "get", "register"]

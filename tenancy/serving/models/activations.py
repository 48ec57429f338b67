"""The activation functions our model code implements, by their transformers config names.

A config naming anything else is refused when the model is built: silently substituting another
activation would produce wrong tokens without an error.
"""
from __future__ import annotations

from functools import partial
from typing import Callable

import torch
import torch.nn.functional as F

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu_new": partial(F.gelu, approximate="tanh"),
    "gelu_pytorch_tanh": partial(F.gelu, approximate="tanh"),
    "gelu": F.gelu,
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
}


def activation(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    if name not in ACTIVATIONS:
        raise NotImplementedError(f"activation {name!r} is not implemented by the serving models; "
                                  f"have {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]

r"""The multi-layer perceptron used by :class:`~poseprior.priors.hand_vae.HandVAEPrior`.

A plain stack of linear layers and activations, with optional residual connections between the
hidden layers. It deliberately has no BatchNorm and no Dropout: their train/eval switch would leak
into a prior's ``log_prob`` (the VPoser mistake the contract's train/eval test catches), so the
output is a deterministic function of the input in both modes.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

__all__ = ["MLP", "count_parameters"]

Activation = Literal["silu", "relu", "leaky_relu", "elu", "tanh"]

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "silu": nn.SiLU,
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "tanh": nn.Tanh,
}


class MLP(nn.Module):
    r"""Creates a multi-layer perceptron with shape :math:`(*, C_{in}) \to (*, C_{out})`.

    .. math:: h_0 = \sigma(W_0 x), \quad h_{i} = h_{i-1} + \sigma(W_i h_{i-1}), \quad y = W_L h_{L-1}

    (without ``residual`` the hidden update is :math:`h_i = \sigma(W_i h_{i-1})`).

    Arguments:
        in_features: The number of input features :math:`C_{in}`.
        out_features: The number of output features :math:`C_{out}`.
        hidden_features: The width of every hidden layer.
        num_layers: The number of hidden layers (at least 1); there are ``num_layers + 1`` linear
            layers in all.
        activation: The activation :math:`\sigma`, one of ``"silu"``, ``"relu"``,
            ``"leaky_relu"``, ``"elu"``, ``"tanh"``.
        residual: Add skip connections around the hidden-to-hidden layers, which keeps deep
            stacks trainable without normalization layers.
        zero_last: Initialize the last layer to zero, so the network starts as the constant 0
            (a VAE encoder then starts at the latent prior, a decoder at its offset).
        generator: Draws the initial weights (PyTorch's default distribution for ``nn.Linear``,
            uniform on :math:`\pm 1/\sqrt{\mathrm{fan\_in}}`); ``None`` uses ``nn.Linear``'s own
            initialization, which draws from torch's global generator.

    Example:
        >>> import torch
        >>> mlp = MLP(45, 64, hidden_features=128, num_layers=2)
        >>> mlp(torch.zeros(8, 45)).shape
        torch.Size([8, 64])
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden_features: int = 512,
        num_layers: int = 3,
        activation: Activation = "silu",
        residual: bool = True,
        zero_last: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        for name, value in (
            ("in_features", in_features),
            ("out_features", out_features),
            ("hidden_features", hidden_features),
            ("num_layers", num_layers),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"MLP: {name} must be a positive int, got {value!r}")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"MLP: unknown activation {activation!r}; choose one of {sorted(_ACTIVATIONS)}")
        self.residual = bool(residual)
        widths = [in_features] + [hidden_features] * num_layers
        pairs = [*zip(widths[:-1], widths[1:], strict=True), (hidden_features, out_features)]
        layers = [_linear(a, b, generator) for a, b in pairs]
        self.hidden = nn.ModuleList(layers[:-1])
        self.out = layers[-1]
        self.act = _ACTIVATIONS[activation]()
        if zero_last:
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor) -> Tensor:
        r"""Applies the network to ``x`` with shape :math:`(*, C_{in})`; returns :math:`(*, C_{out})`."""
        h = self.act(self.hidden[0](x))
        for layer in self.hidden[1:]:
            h = h + self.act(layer(h)) if self.residual else self.act(layer(h))
        return self.out(h)

    def extra_repr(self) -> str:
        return f"residual={self.residual}"


def _linear(fan_in: int, fan_out: int, generator: torch.Generator | None) -> nn.Linear:
    """``nn.Linear(fan_in, fan_out)``, its weights drawn from ``generator`` when one is given."""
    if generator is None:
        return nn.Linear(fan_in, fan_out)
    layer = nn.utils.skip_init(nn.Linear, fan_in, fan_out)  # no draw from the global generator
    bound = 1.0 / math.sqrt(fan_in)
    with torch.no_grad():
        layer.weight.uniform_(-bound, bound, generator=generator)
        layer.bias.uniform_(-bound, bound, generator=generator)
    return layer


def count_parameters(module: nn.Module) -> int:
    """The number of trainable parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)

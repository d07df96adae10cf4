"""SIREN: multilayer perceptrons with sine activations (Sitzmann et al., NeurIPS 2020).

A sine layer computes ``sin(ω · (W x + b))``. Sitzmann's initialisation keeps every
layer's pre-activation ``ω (W x + b)`` close to a standard normal and every activation
arcsine-distributed on [−1, 1] whatever the depth:

* first layer: ``W ~ U(−1/n, 1/n)`` (n = input features), scaled by the first-layer
  frequency ω₀, which sets how fine a detail the network represents at the start (the
  PtyINR knob, 30–300);
* hidden layers: ``W ~ U(−√(6/n)/ω, √(6/n)/ω)``, so ``ω W x`` has unit variance for
  arcsine-distributed inputs x (variance 1/2) — the ω in front cancels the 1/ω here.

The last layer is linear with the hidden initialisation (no sine), as in the paper's
image-fitting networks. First-layer biases are U(−1/√n, 1/√n) (PyTorch's default: random
phase offsets); hidden biases share the weights' bound so they do not widen the
pre-activation beyond the unit variance of the analysis.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class SineLayer(nn.Module):
    """``sin(omega · (W x + b))`` with Sitzmann's initialisation.

    Parameters
    ----------
    in_features, out_features : int
    omega : float
        Frequency factor ω (ω₀ for the first layer).
    first : bool
        First layer: ``W ~ U(−1/n, 1/n)``; otherwise ``U(−√(6/n)/ω, √(6/n)/ω)``.
    generator : torch.Generator, optional
        Seeds the weights.
    """

    def __init__(self, in_features: int, out_features: int, omega: float = 30.0,
                 first: bool = False, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if not (math.isfinite(omega) and omega > 0):
            raise ValueError(f"omega must be a positive finite number (got {omega!r})")
        self.omega = float(omega)
        self.linear = nn.Linear(in_features, out_features)
        bound = 1.0 / in_features if first else math.sqrt(6.0 / in_features) / self.omega
        with torch.no_grad():
            self.linear.weight.uniform_(-bound, bound, generator=generator)
            # first layer: random phase offsets over many periods; hidden layers: biases as
            # small as the weights, so the pre-activation stays ~N(0, 1) as in the analysis
            b = 1.0 / math.sqrt(in_features) if first else bound
            self.linear.bias.uniform_(-b, b, generator=generator)

    def preactivation(self, x: torch.Tensor) -> torch.Tensor:
        """``ω (W x + b)``, the argument of the sine (for initialisation checks)."""
        return self.omega * self.linear(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.preactivation(x))


class Siren(nn.Module):
    """Sine-activated MLP from coordinates to values.

    Parameters
    ----------
    in_features : int
        Coordinate dimension (2 for images).
    hidden_features : int
        Width of every hidden layer.
    hidden_layers : int
        Sine layers after the first one (the paper's "3 hidden layers").
    out_features : int
        Output values per point.
    first_omega : float
        ω₀ of the first layer.
    hidden_omega : float
        ω of the hidden layers.
    output_scale : float
        Multiplies the final layer's initial weights (< 1 starts the field near its bias,
        e.g. a flat object).
    generator : torch.Generator, optional
        Seeds all weights.
    """

    def __init__(self, in_features: int = 2, hidden_features: int = 256,
                 hidden_layers: int = 3, out_features: int = 1, first_omega: float = 30.0,
                 hidden_omega: float = 30.0, output_scale: float = 1.0,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        for name, value in (("in_features", in_features), ("hidden_features", hidden_features),
                            ("out_features", out_features)):
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"{name} must be an integer >= 1 (got {value!r})")
        if isinstance(hidden_layers, bool) or int(hidden_layers) != hidden_layers \
                or hidden_layers < 0:
            raise ValueError(f"hidden_layers must be an integer >= 0 (got {hidden_layers!r})")
        layers: list[nn.Module] = [SineLayer(in_features, hidden_features, first_omega,
                                             first=True, generator=generator)]
        layers += [SineLayer(hidden_features, hidden_features, hidden_omega,
                             generator=generator) for _ in range(int(hidden_layers))]
        self.sines = nn.ModuleList(layers)
        self.head = nn.Linear(hidden_features, out_features)
        bound = math.sqrt(6.0 / hidden_features) / float(hidden_omega) * float(output_scale)
        with torch.no_grad():
            self.head.weight.uniform_(-bound, bound, generator=generator)
            self.head.bias.zero_()

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        """Values (..., out_features) at coordinates (..., in_features)."""
        x = coords
        for layer in self.sines:
            x = layer(x)
        return self.head(x)

    def activations(self, coords: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(pre-activation, activation) of every sine layer, for initialisation checks."""
        out = []
        x = coords
        with torch.no_grad():
            for layer in self.sines:
                pre = layer.preactivation(x)
                x = torch.sin(pre)
                out.append((pre, x))
        return out


#: softplus⁻¹(1): an amplitude head with zero output starts at transmission 1.
_SOFTPLUS_INV_ONE = math.log(math.e - 1.0)


class ObjectField(nn.Module):
    """Complex object as two SIRENs: amplitude (softplus, > 0) and phase (radians).

    Parameters
    ----------
    width, hidden_layers : int
        Size of each SIREN.
    first_omega, hidden_omega : float
        ω₀ and hidden ω.
    generator : torch.Generator, optional
        Seeds both networks.

    Notes
    -----
    The heads start with weights 10× smaller than Sitzmann's so the initial object is
    close to a flat unit transmission with zero phase (what iterative engines start from)
    rather than random structure the data must first undo.
    """

    def __init__(self, width: int = 512, hidden_layers: int = 3, first_omega: float = 30.0,
                 hidden_omega: float = 30.0, generator: torch.Generator | None = None) -> None:
        super().__init__()
        kw = {"hidden_features": width, "hidden_layers": hidden_layers,
              "first_omega": first_omega, "hidden_omega": hidden_omega, "output_scale": 0.1,
              "generator": generator}
        self.amplitude = Siren(**kw)
        self.phase = Siren(**kw)

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        """Complex transmission (...) at coordinates (..., 2) in [0, 1]²."""
        amp = nn.functional.softplus(self.amplitude(coords)[..., 0] + _SOFTPLUS_INV_ONE)
        phase = self.phase(coords)[..., 0]
        return torch.polar(amp.float(), phase.float())

"""Multi-resolution hash-grid encoding of 2D coordinates, in plain torch (CPU and GPU).

Müller et al. (2022), "Instant neural graphics primitives with a multiresolution hash
encoding": level ``l`` lays a grid of resolution ``N_l = floor(N_min · b^l)`` over the unit
square; each grid vertex owns a trainable feature vector, and a point's level feature is the
bilinear interpolation of its cell's four corner vectors. Coarse levels whose
``(N_l + 1)²`` vertices fit in the table are indexed densely (one entry per vertex, no
collisions); finer levels map vertices into ``T`` entries with the spatial hash
``(x · π₁) XOR (y · π₂) mod T``, π₁ = 1, π₂ = 2 654 435 761, and let the gradient average
out the collisions. The encoding is the concatenation of all level features.

All levels live in one flat parameter (``table``) with per-level offsets, so one gather
serves every level and the code needs no tiny-cuda-nn.
"""

from __future__ import annotations

import math

import torch
from torch import nn

#: Spatial-hash primes (Teschner et al. 2003, as used by Müller et al. 2022).
HASH_PRIMES = (1, 2654435761)


def _check_int(name: str, value: int, low: int) -> int:
    if isinstance(value, bool) or int(value) != value or value < low:
        raise ValueError(f"{name} must be an integer >= {low} (got {value!r})")
    return int(value)


class HashGridEncoding(nn.Module):
    """Multi-resolution hash encoding of points in [0, 1]².

    Parameters
    ----------
    levels : int
        Number of resolution levels L.
    features : int
        Features per table entry F.
    log2_table_size : int
        Entries per level ``T = 2**log2_table_size`` (the hash table size).
    base_resolution : int
        Grid resolution N_min of the coarsest level.
    growth : float
        Resolution factor b between consecutive levels (> 1).
    init_scale : float
        Table entries start as U(−init_scale, init_scale) (small, as in Müller et al.).
    generator : torch.Generator, optional
        Seeds the table initialisation.

    Attributes
    ----------
    resolutions : list of int
        Grid resolution of each level.
    level_sizes : list of int
        Table entries used by each level (≤ T; dense levels use ``(N_l + 1)²``).
    hashed : list of bool
        Whether each level uses the spatial hash.
    """

    def __init__(self, levels: int = 16, features: int = 2, log2_table_size: int = 15,
                 base_resolution: int = 16, growth: float = 1.5, init_scale: float = 1e-4,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        levels = _check_int("levels", levels, 1)
        self.features = _check_int("features", features, 1)
        log2_table_size = _check_int("log2_table_size", log2_table_size, 2)
        base_resolution = _check_int("base_resolution", base_resolution, 1)
        if not (math.isfinite(growth) and growth >= 1.0):
            raise ValueError(f"growth must be a finite number >= 1 (got {growth!r})")
        self.table_size = 2 ** log2_table_size
        self.resolutions = [int(math.floor(base_resolution * growth ** lvl))
                            for lvl in range(levels)]
        self.hashed = [(n + 1) ** 2 > self.table_size for n in self.resolutions]
        self.level_sizes = [self.table_size if h else (n + 1) ** 2
                            for n, h in zip(self.resolutions, self.hashed, strict=True)]
        offsets = [0]
        for size in self.level_sizes[:-1]:
            offsets.append(offsets[-1] + size)
        self.register_buffer("_res", torch.tensor(self.resolutions, dtype=torch.float32),
                             persistent=False)
        self.register_buffer("_offsets", torch.tensor(offsets, dtype=torch.long),
                             persistent=False)
        self.register_buffer("_hashed", torch.tensor(self.hashed), persistent=False)
        total = sum(self.level_sizes)
        init = torch.rand((total, self.features), generator=generator) * 2 - 1
        self.table = nn.Parameter(init * float(init_scale))

    @property
    def levels(self) -> int:
        """Number of levels L."""
        return len(self.resolutions)

    @property
    def output_dim(self) -> int:
        """Length L · F of the encoding."""
        return self.levels * self.features

    def _vertex_index(self, iy: torch.Tensor, ix: torch.Tensor) -> torch.Tensor:
        """Table rows (..., L) of integer vertices (..., L): dense or hashed per level."""
        res = self._res.to(torch.long)
        dense = iy * (res + 1) + ix
        hashed = torch.bitwise_xor(ix * HASH_PRIMES[0], iy * HASH_PRIMES[1]) & (
            self.table_size - 1)
        return torch.where(self._hashed, hashed, dense) + self._offsets

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        """Encode points.

        Parameters
        ----------
        coords : Tensor, float, shape (..., 2)
            Points (row, col) in [0, 1]² (values outside are clamped to the square).

        Returns
        -------
        Tensor, shape (..., L · F)
        """
        if coords.shape[-1] != 2:
            raise ValueError(f"coords must have shape (..., 2); got {tuple(coords.shape)}")
        lead = coords.shape[:-1]
        x = coords.reshape(-1, 1, 2).clamp(0.0, 1.0).to(self.table.dtype)
        scaled = x * self._res[:, None]  # (P, L, 2)
        # the top edge belongs to the last cell, so every corner index stays <= N_l
        cell = torch.minimum(torch.floor(scaled), (self._res - 1)[:, None]).detach()
        frac = scaled - cell
        cy, cx = cell[..., 0].long(), cell[..., 1].long()
        fy, fx = frac[..., 0:1], frac[..., 1:2]
        out = 0
        for dy, dx in ((0, 0), (0, 1), (1, 0), (1, 1)):
            rows = self._vertex_index(cy + dy, cx + dx)  # (P, L)
            wy = fy if dy else 1 - fy
            wx = fx if dx else 1 - fx
            out = out + self.table[rows] * (wy * wx)
        return out.reshape(*lead, self.output_dim)


def relu_mlp(in_features: int, width: int, hidden_layers: int, out_features: int = 1
             ) -> nn.Sequential:
    """``hidden_layers`` Linear+ReLU layers of ``width`` followed by a linear head."""
    layers: list[nn.Module] = []
    n = in_features
    for _ in range(hidden_layers):
        layers += [nn.Linear(n, width), nn.ReLU()]
        n = width
    layers.append(nn.Linear(n, out_features))
    return nn.Sequential(*layers)


class ProbeField(nn.Module):
    """Complex probe: a shared hash-grid encoding, then ReLU MLPs for amplitude and phase.

    The amplitude head is linear (signed amplitude), so the gradient does not vanish where
    the probe is dark and the probe can spread beyond its starting estimate.

    Parameters
    ----------
    width, hidden_layers : int
        Size of each MLP (PtyINR: 2 hidden layers of 64).
    levels, features, log2_table_size, base_resolution, growth
        See :class:`HashGridEncoding`.
    generator : torch.Generator, optional
        Seeds the table (the MLPs use torch's global generator, seeded by the engine).
    """

    def __init__(self, width: int = 64, hidden_layers: int = 2, levels: int = 16,
                 features: int = 2, log2_table_size: int = 15, base_resolution: int = 16,
                 growth: float = 1.5, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.encoding = HashGridEncoding(levels, features, log2_table_size, base_resolution,
                                         growth, generator=generator)
        self.amplitude = relu_mlp(self.encoding.output_dim, width, hidden_layers)
        self.phase = relu_mlp(self.encoding.output_dim, width, hidden_layers)

    def forward(self, coords: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(complex probe, amplitude |A|) at coordinates (..., 2) in [0, 1]²."""
        code = self.encoding(coords)
        # The amplitude head is linear (a signed amplitude; a sign flip is a phase of π).
        # A softplus here made dP/dθ ∝ |P| wherever the probe is dark, so a probe started
        # from a compact estimate could never grow into its true, wider footprint.
        amp = self.amplitude(code)[..., 0]
        phase = self.phase(code)[..., 0]
        return torch.complex(amp * torch.cos(phase), amp * torch.sin(phase)), amp.abs()

"""Time-conditioned U-Net for a DDPM noise predictor (Ho et al. 2020, small CPU-sized).

Residual blocks with GroupNorm + SiLU, a sinusoidal timestep embedding added inside each
block, and single-head self-attention at the coarse levels only (attention is quadratic in
the number of pixels, so the fine levels stay purely convolutional). Input and output have
the same number of channels (2: object amplitude and phase, each in [-1, 1]).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn


@dataclass
class UNetConfig:
    """Architecture of :class:`UNet` (stored with shipped weights).

    Parameters
    ----------
    channels : int
        Image channels in and out.
    base : int
        Feature channels at full resolution.
    mults : tuple of int
        Channel multiplier per resolution level (one downsampling between levels).
    attention_levels : tuple of int
        Level indices (0 = full resolution) that get self-attention.
    groups : int
        GroupNorm groups (must divide every level's channel count).
    """

    channels: int = 2
    base: int = 32
    mults: tuple[int, ...] = (1, 2, 2)
    attention_levels: tuple[int, ...] = (2,)
    groups: int = 8

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly dictionary."""
        d = asdict(self)
        d["mults"] = list(self.mults)
        d["attention_levels"] = list(self.attention_levels)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> UNetConfig:
        """Inverse of :meth:`as_dict`."""
        d = dict(d)
        d["mults"] = tuple(d.get("mults", (1, 2, 2)))
        d["attention_levels"] = tuple(d.get("attention_levels", (2,)))
        return cls(**d)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps ``t`` (B,) into (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


class ResBlock(nn.Module):
    """Two 3x3 convolutions with a timestep-dependent shift between them."""

    def __init__(self, cin: int, cout: int, tdim: int, groups: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.temb = nn.Linear(tdim, cout)
        self.norm2 = nn.GroupNorm(groups, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        # zero-init the last conv so every block starts as the identity (stable early steps)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(nn.functional.silu(self.norm1(x)))
        h = h + self.temb(temb)[:, :, None, None]
        h = self.conv2(nn.functional.silu(self.norm2(h)))
        return h + self.skip(x)


class SelfAttention(nn.Module):
    """Single-head self-attention over all pixels of a coarse feature map."""

    def __init__(self, ch: int, groups: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(groups, ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.out = nn.Conv2d(ch, ch, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).unbind(1)
        a = nn.functional.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return x + self.out(a.transpose(1, 2).reshape(b, c, h, w))


class UNet(nn.Module):
    """Noise predictor ε_θ(x_t, t) for images whose sides are divisible by
    ``2 ** (len(mults) - 1)``.

    Parameters
    ----------
    config : UNetConfig, optional
        Architecture; defaults to a ~1.5 M parameter network.
    """

    def __init__(self, config: UNetConfig | None = None) -> None:
        super().__init__()
        cfg = config or UNetConfig()
        self.config = cfg
        chans = [cfg.base * m for m in cfg.mults]
        if any(c % cfg.groups for c in chans):
            raise ValueError(f"groups={cfg.groups} must divide every level's channels {chans}")
        tdim = 4 * cfg.base
        self.tmlp = nn.Sequential(nn.Linear(cfg.base, tdim), nn.SiLU(), nn.Linear(tdim, tdim))
        self.inp = nn.Conv2d(cfg.channels, chans[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.down_attn = nn.ModuleList()
        self.pool = nn.ModuleList()
        prev = chans[0]
        for i, c in enumerate(chans):
            self.down.append(ResBlock(prev, c, tdim, cfg.groups))
            self.down_attn.append(SelfAttention(c, cfg.groups) if i in cfg.attention_levels
                                  else nn.Identity())
            self.pool.append(nn.Conv2d(c, c, 3, stride=2, padding=1) if i < len(chans) - 1
                             else nn.Identity())
            prev = c
        self.mid1 = ResBlock(prev, prev, tdim, cfg.groups)
        self.mid_attn = SelfAttention(prev, cfg.groups)
        self.mid2 = ResBlock(prev, prev, tdim, cfg.groups)
        self.up = nn.ModuleList()
        self.up_attn = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i in reversed(range(len(chans))):
            c = chans[i]
            self.up.append(ResBlock(prev + c, c, tdim, cfg.groups))
            self.up_attn.append(SelfAttention(c, cfg.groups) if i in cfg.attention_levels
                                else nn.Identity())
            self.upsample.append(nn.Conv2d(c, chans[i - 1], 3, padding=1) if i > 0
                                 else nn.Identity())
            prev = chans[i - 1] if i > 0 else c
        self.out_norm = nn.GroupNorm(cfg.groups, prev)
        self.out = nn.Conv2d(prev, cfg.channels, 3, padding=1)

    @property
    def factor(self) -> int:
        """Image sides must be multiples of this."""
        return 2 ** (len(self.config.mults) - 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Predict the noise in ``x`` (B, C, H, W) at integer timesteps ``t`` (B,)."""
        if x.shape[-1] % self.factor or x.shape[-2] % self.factor:
            raise ValueError(f"image sides {tuple(x.shape[-2:])} must be multiples of "
                             f"{self.factor}")
        temb = self.tmlp(timestep_embedding(t, self.config.base))
        h = self.inp(x)
        skips = []
        for block, attn, pool in zip(self.down, self.down_attn, self.pool, strict=True):
            h = attn(block(h, temb))
            skips.append(h)
            h = pool(h)
        h = self.mid2(self.mid_attn(self.mid1(h, temb)), temb)
        for block, attn, ups in zip(self.up, self.up_attn, self.upsample, strict=True):
            h = attn(block(torch.cat([h, skips.pop()], dim=1), temb))
            if not isinstance(ups, nn.Identity):
                h = ups(nn.functional.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.out(nn.functional.silu(self.out_norm(h)))


def load_prior(path: str | None = None, device: Any = "cpu") -> tuple[UNet, int, dict[str, Any]]:
    """Load a trained diffusion prior: (network in eval mode, patch size, card).

    Parameters
    ----------
    path : str, optional
        A ``.pt`` file written by ``napari-ptycho train diffusion`` or a folder holding
        ``diffusion_prior.pt``; default: the prior shipped in ``napari_ptycho/weights``.
    device : str or torch.device
        Where to put the network.

    Raises
    ------
    ValueError
        If the file is missing or is not a diffusion prior.
    """
    import json
    from pathlib import Path

    p = Path(path) if path else Path(__file__).resolve().parents[1] / "weights"
    if p.is_dir():
        p = p / "diffusion_prior.pt"
    if not p.is_file():
        raise ValueError(f"prior: no diffusion prior at {str(p)!r}")
    blob = torch.load(p, map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or not {"unet", "size", "state_dict"} <= set(blob):
        raise ValueError(f"prior: {str(p)!r} is not a diffusion prior file")
    model = UNet(UNetConfig.from_dict(blob["unet"]))
    model.load_state_dict(blob["state_dict"])
    model.eval().requires_grad_(False)
    card_path = p.with_suffix(".json")
    card = json.loads(card_path.read_text()) if card_path.is_file() else {}
    return model.to(device), int(blob["size"]), card

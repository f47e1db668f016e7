"""The model-family seam: everything that differs between kinds of diffusion model, behind one
small interface. The edit core (:mod:`locobank.core`) is written against it and never asks which
family it holds.

A family says how an image becomes a state and back, what the posterior-mean predictor maps to
(pixels; decoded for latent models), and which network predicts the noise on states (with its
conditioning, e.g. a prompt and guidance, already bound). DDIM inversion and sampling run on
states through :attr:`ModelFamily.denoiser`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

from torch import Tensor

from ..loco.denoiser import Denoiser
from ..settings import DEFAULT_GUIDANCE


@dataclass(frozen=True)
class Condition:
    """What conditions the network: the prompt, the negative prompt and the guidance scale."""

    prompt: str = ""
    negative_prompt: str = ""
    guidance: float = DEFAULT_GUIDANCE


class ModelFamily(Protocol):
    """What the edit core needs of a model. Pixel models implement it with identities.

    Code outside :mod:`locobank.models` asks a family what it does (``cond is None``: it takes no
    prompt), never which family it is."""

    name: str  # recorded in the catalog: "pixel", "latent", ...; a label, never branched on
    denoiser: Denoiser  # the noise predictor on states, conditioning bound
    cond: Condition | None  # the condition bound to ``denoiser``; None: an unconditional family
    state_shape: tuple[int, int, int]  # (C, h, w) of a state x_t and of a direction
    image_shape: tuple[int, int, int]  # (C, H, W) of the images; masks are H x W
    clip_sample: bool  # clamp predicted clean states to [-1, 1] when generating (pixels, not latents)
    bf16_previews: bool  # image-aware previews may run in bfloat16 under "auto" (locobank.rank.preview)

    def encode(self, images: Tensor) -> Tensor:
        """Clean images (B, C, H, W) in [-1, 1] to clean states (B, *state_shape)."""

    def decode(self, states: Tensor) -> Tensor:
        """Clean states back to images in [-1, 1]."""

    def predictor(self, t: int) -> Callable[[Tensor], Tensor]:
        """The posterior-mean predictor at timestep ``t`` as a map from one state (state_shape)
        to one image (image_shape): the function whose Jacobian LOCO takes."""

    def state_change(self, image_change: Tensor, at: Tensor) -> Tensor:
        """A change of images (B, *image_shape) made about the images ``at`` carried to a change
        of states at low noise, for the spill passes (pixels: itself)."""

    def state_mask(self, mask: Tensor) -> Tensor:
        """An image mask (H, W) on the state's grid (h, w), for spatial registration."""


class PixelFamily:
    """Pixel-space models (``UNet2DModel``): the state is the image itself."""

    name = "pixel"
    clip_sample = True
    bf16_previews = True  # measured on the toy pixel model: the same top hits (locobank.rank.preview)
    cond = None  # unconditional: takes no prompt

    def __init__(self, denoiser: Denoiser, channels: int, resolution: int):
        self.denoiser = denoiser
        self.state_shape = (channels, resolution, resolution)
        self.image_shape = (channels, resolution, resolution)

    def encode(self, images: Tensor) -> Tensor:
        return images

    def decode(self, states: Tensor) -> Tensor:
        return states

    def predictor(self, t: int) -> Callable[[Tensor], Tensor]:
        den = self.denoiser

        def fn(z: Tensor) -> Tensor:
            return den.pmp(z[None], t)[0]

        return fn

    def state_change(self, image_change: Tensor, at: Tensor) -> Tensor:
        return image_change

    def state_mask(self, mask: Tensor) -> Tensor:
        return mask

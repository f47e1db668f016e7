"""Measurements of the toy world: what the pixel and latent models share (:mod:`.common`: PSNR,
medians, sample grids, CLIP zero-shot), the pixel DDPM's bars (:mod:`.pixel`), the latent
text-to-image model's (:mod:`.latent`), and search and apply measured with pixel probes
(:mod:`.quality`)."""

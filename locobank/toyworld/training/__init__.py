"""Training of the toy models: the pixel DDPM (:mod:`.ddpm`), the CLIP (:mod:`.clip`), the latent
text-to-image model (:mod:`.latent`, with its text side in :mod:`.text_encoder`), and the
resumable safetensors training state they share (:mod:`.state`). The trainers import diffusers
and open_clip directly: they build models, they do not load them."""

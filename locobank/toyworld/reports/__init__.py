"""The toy world's reports as library calls returning plain dicts (the CLI prints them): the pixel
DDPM's bars (``toy eval``, :mod:`.pixel`), the latent model's (``toy eval-sd``, :mod:`.latent`),
and search and apply on a demo run (``toy quality``, :mod:`.quality`)."""

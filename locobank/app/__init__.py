"""``locobank serve``: a local Gradio app over the same library calls as the CLI.

- :mod:`.access`: who may connect (loopback by default; anything else needs a password);
- :mod:`.uploads`: what the browser may send (PNG or JPEG, bounded, EXIF orientation honoured);
- :mod:`.cache`: the loaded catalog, CLIP and the images already made ready, kept between requests;
- :mod:`.handlers`: the page's actions as plain functions over the library;
- :mod:`.server` and the ``tab_*`` modules: the Gradio layout and its launch.

Only :mod:`.server` and the tabs import gradio (the ``app`` extra), so the rest of locobank, and
these helpers, work without it.
"""

"""``locobank serve``: a local Gradio app over the same library calls as the CLI.

- :mod:`.access`: who may connect (loopback by default; anything else needs a password);
- :mod:`.uploads`: what the browser may send (PNG or JPEG, bounded, EXIF orientation honoured);
- :mod:`.cache`: the loaded catalog, CLIP and the images already made ready, kept between requests;
- :mod:`.apply_actions`: what the Apply tab does (take an image, apply, sweep, best of N), as plain
  functions over :mod:`locobank.apply`;
- :mod:`.listings`: what the Search and Browse tabs show (hit cards, a direction's detail, catalog
  statistics, runs and jobs), read from the catalog and the index;
- :mod:`.guard`: library errors turned into messages on the page;
- :mod:`.server` and the ``tab_*`` modules: the Gradio layout and its launch.

Only :mod:`.server`, :mod:`.guard` and the tabs import gradio (the ``app`` extra), so the rest of
locobank, and these helpers, work without it.
"""

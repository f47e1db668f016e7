"""The Search tab: a text box and filters; hits as cards (the −λ/0/+λ strip and its facts); a
selected card's detail (provenance, the image it was harvested on)."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from .apply_actions import take_mask, take_upload
from .cache import Resources
from .guard import guarded
from .listings import direction_detail, search_cards
from .ranked_cards import POOL, ranked_cards

IMAGE_TYPES = [".png", ".jpg", ".jpeg"]

HELP = ("Type the edit you want (**smile**, **blond hair**, or **frown -> smile**). Each card shows the "
        "direction's edit at −λ, 0 and +λ on the face it was found on, left to right, turned so that it reads "
        "towards your text; its name carries the sign (+v or −v) that does the edit. Click a card for its detail. "
        "**Rank for my image**: give your image (and the mask of the part to change) and the top "
        f"{POOL} hits are previewed on it and re-ranked by what they do there; each card then shows your image "
        "before and after, at the strength that makes the change show, and Apply starts from that strength.")


@dataclass
class SearchTab:
    """The components other tabs wire to."""

    chosen: gr.Number
    strength: gr.Number
    use: gr.Button
    image: gr.File  # the image the cards were ranked for (None: ranked by text alone)
    mask: gr.File


def filters(res: Resources) -> tuple[list[str], list[str]]:
    """The models and the mask parts the catalog holds, for the filter menus."""
    s = res.catalog.stats()
    return [""] + sorted(s["models"]), [""] + sorted(s["mask_labels"])


def build(res: Resources) -> SearchTab:
    """Lay out the tab and wire its events (inside a ``gr.Blocks``)."""
    models, parts = filters(res)
    gr.Markdown(HELP)
    with gr.Row():
        query = gr.Textbox(label="What should the edit do?", placeholder="smile", scale=4, elem_id="query")
        model = gr.Dropdown(models, value="", label="Model", scale=2)
        part = gr.Dropdown(parts, value="", label="Mask part", scale=1)
        k = gr.Slider(1, 48, value=12, step=1, label="Hits", scale=1)
    with gr.Row():
        image = gr.File(label="Your image (optional)", file_types=IMAGE_TYPES, type="filepath", elem_id="search-image")
        mask = gr.File(label="Its mask (optional; white = the part to change)", file_types=IMAGE_TYPES,
                       type="filepath", elem_id="search-mask")
    with gr.Row():
        go = gr.Button("Search", variant="primary", elem_id="search-button")
        go_rank = gr.Button("Rank for my image", variant="primary", elem_id="rank-button")
    cards = gr.Gallery(label="Hits", columns=3, height="auto", object_fit="contain", allow_preview=False, format="png",
                       elem_id="hits")
    ids = gr.State([])
    with gr.Row():
        with gr.Column(scale=3):
            detail = gr.Markdown("Select a card to see its detail.", elem_id="detail")
        with gr.Column(scale=2):
            with gr.Row():
                chosen = gr.Number(label="Direction id", precision=0, elem_id="direction-id")
                strength = gr.Number(label="Strength that does the searched edit", interactive=False)
            strip = gr.Image(label="Its preview (−λ, 0, +λ)", interactive=False, type="pil")
            source = gr.Image(label="The image it was harvested on (its mask in red)", interactive=False, type="pil")
            use = gr.Button("Use it in Apply")

    _wire(res, locals())
    return SearchTab(chosen, strength, use, image, mask)


def _wire(res: Resources, c: dict) -> None:
    """The tab's events; ``c`` holds its components by name."""

    @guarded
    def run(text: str, model_id: str, mask_part: str, n: float):
        found = search_cards(res, text, model=model_id or None, mask_label=mask_part or None, k=int(n))
        if not found:
            gr.Warning(f"no direction matches {text!r} with these filters")
        return [(str(card.strip), card.caption) for card in found], [[card.hit.id, card.hit.signed_strength]
                                                                     for card in found]

    @guarded
    def rank(text: str, model_id: str, n: float, upload, mask_upload, progress=gr.Progress()):  # noqa: ANN001, B008
        if not upload:
            raise gr.Error("give your image first (Search alone ranks by text)")
        inp = take_upload(res, upload)
        found = ranked_cards(res, text, inp, take_mask(inp, mask_upload) if mask_upload else None,
                             model=model_id or None, k=int(n), report=lambda f, s: progress(f, desc=s))
        return [(str(card.tiles), card.caption) for card in found], [[card.hit.id, card.hit.signed_strength]
                                                                     for card in found]

    @guarded
    def show(direction_id: float | None):
        if direction_id is None:
            raise gr.Error("give a direction id")
        text, preview, src = direction_detail(res, int(direction_id))
        return text, preview, src

    def pick(hits: list, evt: gr.SelectData):
        if evt.index is None or evt.index >= len(hits):
            return None, None
        return hits[evt.index][0], hits[evt.index][1]

    text = [c["query"], c["model"], c["part"], c["k"]]
    shown, detail = [c["cards"], c["ids"]], [c["detail"], c["strip"], c["source"]]
    c["go"].click(run, text, shown, api_name="search")
    c["query"].submit(run, text, shown, api_name=False)
    c["go_rank"].click(rank, [c["query"], c["model"], c["k"], c["image"], c["mask"]], shown, api_name="search_image")
    c["cards"].select(pick, [c["ids"]], [c["chosen"], c["strength"]], api_name=False).then(show, [c["chosen"]], detail,
                                                                                          api_name=False)
    c["chosen"].submit(show, [c["chosen"]], detail, api_name="detail")

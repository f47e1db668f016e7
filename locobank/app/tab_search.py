"""The Search tab: a text box and filters; hits as cards (the −λ/0/+λ strip and its facts); a
selected card's detail (provenance, the image it was harvested on)."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from .cache import Resources
from .guard import guarded
from .listings import direction_detail, search_cards

HELP = ("Type the edit you want (**smile**, **blond hair**, or **frown -> smile**). Each card shows the "
        "direction's edit at −λ, 0 and +λ on the face it was found on, left to right, turned so that it reads "
        "towards your text; its name carries the sign (+v or −v) that does the edit. Click a card for its detail.")


@dataclass
class SearchTab:
    """The components other tabs wire to."""

    chosen: gr.Number
    strength: gr.Number
    use: gr.Button


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
    go = gr.Button("Search", variant="primary", elem_id="search-button")
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

    @guarded
    def run(text: str, model_id: str, mask_part: str, n: float):
        found = search_cards(res, text, model=model_id or None, mask_label=mask_part or None, k=int(n))
        if not found:
            gr.Warning(f"no direction matches {text!r} with these filters")
        return [(str(c.strip), c.caption) for c in found], [[c.hit.id, c.hit.signed_strength] for c in found]

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

    go.click(run, [query, model, part, k], [cards, ids], api_name="search")
    query.submit(run, [query, model, part, k], [cards, ids], api_name=False)
    cards.select(pick, [ids], [chosen, strength], api_name=False).then(show, [chosen], [detail, strip, source], api_name=False)
    chosen.submit(show, [chosen], [detail, strip, source], api_name="detail")
    return SearchTab(chosen, strength, use)

"""The Apply tab: an image (uploaded, or one of the catalog's), a mask (drawn or uploaded), up to
three directions each with its strength; the result beside the input, a sweep, the best of N hits
for a text, and the PNG to download."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
import numpy as np

from ..apply import MAX_STRENGTH
from ..errors import InputError
from ..search import named
from .apply_actions import (InputImage, apply_edit, best_of, catalog_images, editor_mask, sweep_strip,
                            take_catalog_image, take_mask, take_upload)
from .cache import Resources
from .guard import guarded

SLOTS = 3
IMAGE_TYPES = [".png", ".jpg", ".jpeg"]
HELP = ("1. Upload a face (PNG or JPEG), or pick one of the catalog's images (its mask comes with it). "
        "2. Paint the part to change on the image (or upload a mask, white on black, the image's size); "
        "without a mask the edit is applied as found. 3. Pick directions (from Search: **Use it in Apply**) "
        "and strengths, then **Apply**. Trying another strength on the same image and mask is fast: the image "
        "stays inverted between requests.")


@dataclass
class ApplyTab:
    """The components other tabs wire to."""

    first: gr.Dropdown
    first_strength: gr.Slider
    upload: gr.File
    mask_upload: gr.File


def direction_choices(res: Resources, limit: int = 500) -> list[tuple[str, str]]:
    """(label, id) for the catalog's newest directions; any other id can be typed."""
    recs = res.catalog.list_directions()[-limit:][::-1]
    return [(f"#{r.id} {named(r.label, r.label_sign)} · {r.mask_label}", str(r.id)) for r in recs]


def read_specs(values: list) -> list[tuple[int, float]]:
    """(id, strength) of the slots that hold a direction."""
    specs = []
    for d, s in zip(values[0::2], values[1::2]):
        if d is None or str(d).strip() == "":
            continue
        text = str(d).strip().lstrip("#").split()[0]
        if not text.isdigit():
            raise InputError(f"{d!r} is not a direction id")
        specs.append((int(text), float(s)))
    return specs


def build(res: Resources) -> ApplyTab:
    """Lay out the tab and wire its events (inside a ``gr.Blocks``)."""
    gr.Markdown(HELP)
    with gr.Row():
        with gr.Column(scale=1):
            upload = gr.File(label="Your image (PNG or JPEG)", file_types=IMAGE_TYPES, type="filepath",
                             elem_id="image-upload")
            pick = gr.Dropdown(catalog_images(res), value=None, label="…or one of the catalog's images")
            mask_upload = gr.File(label="Mask (optional; white = the part to edit)", file_types=IMAGE_TYPES,
                                  type="filepath", elem_id="mask-upload")
        with gr.Column(scale=2):
            editor = gr.ImageEditor(label="Paint the part to edit", sources=(), type="numpy", image_mode="RGBA",
                                    transforms=(), layers=False, format="png", interactive=True,
                                    brush=gr.Brush(colors=["#ff3030"], color_mode="fixed", default_size=12))
    choices = direction_choices(res)
    slots = []
    for i in range(SLOTS):
        with gr.Row():
            slots.append(gr.Dropdown(choices, value=None, allow_custom_value=True, label=f"Direction {i + 1}",
                                     scale=3, elem_id=f"direction-{i + 1}"))
            slots.append(gr.Slider(-MAX_STRENGTH / 4, MAX_STRENGTH / 4, value=4.0, step=0.01, label="Strength", scale=2,
                                   elem_id=f"strength-{i + 1}"))
    with gr.Row():
        ortho = gr.Checkbox(label="Orthogonalise the directions", value=False)
        seed = gr.Number(value=0, precision=0, label="Seed")
        go = gr.Button("Apply", variant="primary", elem_id="apply-button")
    with gr.Row():
        before = gr.Image(label="Input (as the model takes it)", type="pil", interactive=False)
        after = gr.Image(label="Result", type="pil", interactive=False, elem_id="result")
    status = gr.Markdown(elem_id="apply-status")
    download = gr.File(label="Download the PNG", interactive=False)
    with gr.Accordion("Sweep: the first direction at several strengths", open=False):
        with gr.Row():
            values = gr.Textbox(value="-8,-4,0,4,8", label="Strengths")
            go_sweep = gr.Button("Sweep")
        strip = gr.Image(label="Sweep", type="pil", interactive=False)
    with gr.Accordion("Best of N: try the top hits for a text, keep the one that does it best", open=False):
        with gr.Row():
            query = gr.Textbox(label="Text", placeholder="smile")
            n = gr.Slider(1, 10, value=3, step=1, label="Candidates")
            go_best = gr.Button("Best of N")
    _wire(res, locals())
    return ApplyTab(slots[0], slots[1], upload, mask_upload)


def parse_strengths(text: str) -> list[float]:
    """'-8,-4,0,4,8' as 1 to 11 strengths, each in range."""
    from ..apply.request import check_strength

    try:
        values = [float(v) for v in str(text).split(",") if v.strip()]
    except ValueError as e:
        raise InputError(f"{text!r} is not a comma-separated list of strengths, e.g. -8,-4,0,4,8") from e
    if not 1 <= len(values) <= 11:
        raise InputError("give 1 to 11 strengths, e.g. -8,-4,0,4,8")
    for v in values:
        check_strength(v)
    return values


class Actions:
    """The tab's actions over one server's resources; the image and mask come with every request,
    so each is complete on its own (and the HTTP API needs no session)."""

    def __init__(self, res: Resources):
        self.res = res

    def image_of(self, upload, pick) -> InputImage:  # noqa: ANN001 - gradio values
        if upload:
            return take_upload(self.res, upload)
        if pick:
            return take_catalog_image(self.res, pick)
        raise InputError("upload an image, or pick one of the catalog's images")

    def mask_of(self, inp: InputImage, editor, mask_upload) -> np.ndarray | None:  # noqa: ANN001
        if mask_upload:
            return take_mask(inp, mask_upload)
        return editor_mask((editor or {}).get("layers") or [], inp.shown_size)

    @guarded
    def load(self, upload, pick, mask_upload) -> dict:  # noqa: ANN001
        """The image in the mask editor, with its mask (uploaded, or the catalog's) painted on it."""
        inp = self.image_of(upload, pick)
        mask = take_mask(inp, mask_upload) if mask_upload else inp.mask
        shown = np.asarray(inp.shown())
        layers = []
        if mask is not None:
            layer = np.zeros((*shown.shape[:2], 4), np.uint8)
            layer[_enlarged(mask, inp.shown_size)] = (255, 48, 48, 160)
            layers = [layer]
        return {"background": shown, "layers": layers, "composite": shown}

    @guarded
    def apply(self, upload, pick, editor, mask_upload, *rest, progress=gr.Progress()):  # noqa: ANN001, B008
        *slots, ortho, seed = rest
        inp = self.image_of(upload, pick)
        view = apply_edit(self.res, inp, self.mask_of(inp, editor, mask_upload), read_specs(list(slots)),
                          orthogonalize=bool(ortho), seed=int(seed or 0), report=lambda f, s: progress(f, desc=s))
        return view.before, view.after, str(view.png), view.note

    @guarded
    def sweep(self, upload, pick, editor, mask_upload, values, *rest, progress=gr.Progress()):  # noqa: ANN001, B008
        *slots, seed = rest
        strengths = parse_strengths(values)
        inp = self.image_of(upload, pick)
        img, path = sweep_strip(self.res, inp, self.mask_of(inp, editor, mask_upload), read_specs(list(slots)),
                                strengths, seed=int(seed or 0), report=lambda f, s: progress(f, desc=s))
        return img, str(path)

    @guarded
    def best(self, upload, pick, editor, mask_upload, query, n, seed, progress=gr.Progress()):  # noqa: ANN001, B008
        inp = self.image_of(upload, pick)
        view = best_of(self.res, inp, self.mask_of(inp, editor, mask_upload), str(query or ""), int(n),
                       seed=int(seed or 0), report=lambda f, s: progress(f, desc=s))
        return view.before, view.after, str(view.png), view.note


def _wire(res: Resources, c: dict) -> None:
    """The tab's events; ``c`` holds its components by name."""
    act = Actions(res)
    given = [c["upload"], c["pick"], c["mask_upload"]]
    c["upload"].upload(act.load, given, [c["editor"]], api_name="load_image")
    c["pick"].change(act.load, given, [c["editor"]], api_name=False)
    c["mask_upload"].upload(act.load, given, [c["editor"]], api_name=False)
    source = [c["upload"], c["pick"], c["editor"], c["mask_upload"]]
    shown = [c["before"], c["after"], c["download"], c["status"]]
    c["go"].click(act.apply, source + c["slots"] + [c["ortho"], c["seed"]], shown, api_name="apply")
    c["go_sweep"].click(act.sweep, source + [c["values"]] + c["slots"] + [c["seed"]], [c["strip"], c["download"]],
                        api_name="sweep")
    c["go_best"].click(act.best, source + [c["query"], c["n"], c["seed"]], shown, api_name="best_of")


def _enlarged(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A bool mask at ``size`` (width, height), nearest pixel."""
    from PIL import Image

    return np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.NEAREST)) > 127

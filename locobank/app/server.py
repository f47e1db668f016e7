"""The app: three tabs over one read-only catalog, launched on the loopback interface unless a
password protects it. No share links, no analytics, nothing fetched from outside."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported: no telemetry, no version check

import gradio as gr  # noqa: E402

from . import tab_apply, tab_browse, tab_search  # noqa: E402
from .access import check_bind  # noqa: E402
from .cache import Resources  # noqa: E402
from .uploads import MAX_BYTES  # noqa: E402

log = logging.getLogger(__name__)
TITLE = "locobank"


@dataclass
class ServeOptions:
    """What ``locobank serve`` takes."""

    db: str | None = None
    host: str = "127.0.0.1"
    port: int = 7860
    device: str | None = None
    auth: tuple[str, str] | None = None
    clip: str = "toy"
    domain: str = "face"
    index: Path | None = None  # the search index's folder; default: found beside the catalog or in LOCOBANK_HOME
    threads: int | None = None  # torch's CPU threads (None: torch's default, one per core)


@dataclass
class Server:
    """A running app: its address, and ``close()`` to stop it and drop its files."""

    blocks: gr.Blocks
    url: str
    resources: Resources

    def close(self) -> None:
        """Stop serving, close the catalog and remove the app's own folder."""
        self.blocks.close()
        self.resources.close()
        shutil.rmtree(self.resources.work, ignore_errors=True)


def index_folder(catalog, given: Path | None) -> Path:
    """Where the search index is: ``given``, else where ``search`` and ``index build`` look for this
    catalog (under $LOCOBANK_HOME, or beside a SQLite catalog file, where ``locobank demo`` builds it)."""
    from ..index import catalog_index_folder

    return Path(given) if given is not None else catalog_index_folder(catalog)


def open_resources(opts: ServeOptions) -> Resources:
    """The catalog opened read-only, and the app's own folder for uploads and results."""
    from ..catalog import Catalog

    catalog = Catalog.open(opts.db, read_only=True)
    work = Path(tempfile.mkdtemp(prefix="locobank-serve-"))
    return Resources(catalog, work, device=opts.device, clip_spec=opts.clip, domain=opts.domain,
                     index_folder=index_folder(catalog, opts.index))


def build_app(res: Resources) -> gr.Blocks:
    """The page: Search, Apply and Browse tabs."""
    with gr.Blocks(title=TITLE, analytics_enabled=False) as blocks:
        gr.Markdown(f"## {TITLE}: find an image edit by text, try it on your image")
        with gr.Tabs() as tabs:
            with gr.Tab("Search", id="search"):
                search = tab_search.build(res)
            with gr.Tab("Apply", id="apply"):
                apply = tab_apply.build(res)
            with gr.Tab("Browse", id="browse"):
                fill, shown = tab_browse.build(res)
        blocks.load(fill, [], shown, api_name=False)
        search.use.click(_use, [search.chosen, search.strength, search.image, search.mask],
                         [apply.first, apply.first_strength, apply.upload, apply.mask_upload, tabs], api_name=False)
    return blocks


def _use(direction_id, strength, image, mask):  # noqa: ANN001, ANN202 - gradio handler
    """Put the selected hit in Apply's first slot, at the strength that does the searched edit (the
    one calibrated on the image the cards were ranked for), with that image and mask."""
    if direction_id is None:
        raise gr.Error("select a card first")
    keep = gr.update()
    return (str(int(direction_id)), 4.0 if strength is None else float(strength), image or keep, mask or keep,
            gr.Tabs(selected="apply"))


def start(opts: ServeOptions, *, block: bool = False) -> Server:
    """Open the catalog, build the page and serve it (returns at once unless ``block``)."""
    check_bind(opts.host, opts.auth)
    if opts.threads:
        import torch

        torch.set_num_threads(opts.threads)  # on a shared CPU, fewer threads than cores avoid spin-waiting
    res = open_resources(opts)
    try:
        blocks = build_app(res)
        blocks.queue(default_concurrency_limit=1)  # one model job at a time; the rest wait their turn
        _, url, _ = blocks.launch(server_name=opts.host, server_port=opts.port, auth=opts.auth, share=False,
                                  prevent_thread_lock=True, show_error=True, max_file_size=MAX_BYTES,
                                  allowed_paths=[], ssr_mode=False, quiet=True, footer_links=["api"],
                                  favicon_path=None)
    except BaseException:
        res.close()
        shutil.rmtree(res.work, ignore_errors=True)
        raise
    server = Server(blocks, url, res)
    if block:
        try:
            blocks.block_thread()
        finally:
            server.close()
    return server


__all__ = ["ServeOptions", "Server", "build_app", "index_folder", "open_resources", "start"]

"""The Browse tab: what the catalog holds, its harvest runs and their jobs (failed ones with why),
and the directions found last. Read-only."""

from __future__ import annotations

from typing import Callable

import gradio as gr

from .cache import Resources
from .guard import guarded
from .listings import catalog_stats, failed_jobs, recent_directions, runs_table


def build(res: Resources) -> tuple[Callable, list]:
    """Lay out the tab and wire its events (inside a ``gr.Blocks``); returns what fills it on page load."""
    refresh = gr.Button("Refresh")
    stats = gr.Markdown(elem_id="stats")
    gr.Markdown("#### Harvest runs")
    runs = gr.Dataframe(headers=["run", "model", "created", "jobs", "parameters"], interactive=False, wrap=True)
    gr.Markdown("#### Failed jobs")
    failed = gr.Dataframe(headers=["job", "run", "image", "mask", "attempts", "why it failed"], interactive=False,
                          wrap=True)
    gr.Markdown("#### Directions found last")
    recent = gr.Dataframe(headers=["id", "name", "mask", "model", "t", "sigma", "found"], interactive=False)

    @guarded
    def show():
        rows = runs_table(res)
        return catalog_stats(res), rows, failed_jobs(res, rows), recent_directions(res)

    refresh.click(show, [], [stats, runs, failed, recent], api_name="browse")
    return show, [stats, runs, failed, recent]

"""The ``locobank`` command. Subcommands live one group per file and import torch lazily."""

from __future__ import annotations

import logging
import sys

import click

from locobank import __version__


class LazyGroup(click.Group):
    """A group whose subcommands are imported only when they run, so ``--help`` stays instant."""

    def __init__(self, *args, lazy: dict[str, tuple[str, str, str]] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy = lazy or {}

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx, name):
        if name in self.lazy:
            module, attr, _ = self.lazy[name]
            mod = __import__(module, fromlist=[attr])
            return getattr(mod, attr)
        return super().get_command(ctx, name)

    def format_commands(self, ctx, formatter):
        rows = [(name, self.lazy[name][2]) for name in self.list_commands(ctx) if name in self.lazy]
        rows += [
            (name, cmd.get_short_help_str())
            for name in super().list_commands(ctx)
            if (cmd := super().get_command(ctx, name)) is not None and name not in self.lazy
        ]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(sorted(rows))


COMMANDS: dict[str, tuple[str, str, str]] = {
    "toy": ("cli.toy", "toy", "Make toy faces and train the toy models."),
    "directions": ("cli.directions", "directions", "Find LOCO directions on one image and preview them."),
    "harvest": ("cli.harvest", "harvest", "Harvest directions from many images and masks into the catalog."),
    "index": ("cli.index", "index", "Build or inspect the FAISS search index."),
    "search": ("cli.search", "search", "Find directions by text."),
    "label": ("cli.search", "label", "Name directions from a vocabulary."),
    "apply": ("cli.apply", "apply", "Apply catalog directions to your images."),
    "demo": ("cli.demo", "demo", "Run the whole pipeline on the toy world."),
    "sheet": ("cli.show", "sheet", "Draw a contact sheet of directions."),
    "gallery": ("cli.show", "gallery", "Write a static HTML gallery of the catalog."),
    "db": ("cli.db", "db", "Create or migrate the catalog."),
    "list": ("cli.browse", "list_cmd", "List the directions in the catalog."),
    "show": ("cli.browse", "show_cmd", "Show one direction and its provenance."),
    "stats": ("cli.browse", "stats_cmd", "Count jobs and directions in the catalog."),
    "export": ("cli.browse", "export_cmd", "Write directions to a safetensors pack."),
    "import": ("cli.browse", "import_cmd", "Add the directions of a pack to the catalog."),
}


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="locobank")
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """locobank: a searchable library of reusable LOCO Edit directions for diffusion models.

    Harvest edit directions from images and masks, keep them in a catalog, find them by
    text, and apply them to new images.
    """
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def main() -> None:
    """Console-script entry point."""
    cli()


if __name__ == "__main__":
    main()

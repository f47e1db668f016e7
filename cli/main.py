"""The ``locobank`` command. Subcommands live one group per file and import torch lazily."""

from __future__ import annotations

import logging
import sys
import warnings

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
    "toy": ("locobank_cli.toy", "toy", "Make toy faces and train the toy models."),
    "directions": ("locobank_cli.directions", "directions", "Find LOCO directions on one image and preview them."),
    "harvest": ("locobank_cli.harvest", "harvest", "Harvest directions from many images and masks into the catalog."),
    "index": ("locobank_cli.index", "index", "Build or inspect the FAISS search index."),
    "search": ("locobank_cli.search", "search", "Find directions by text."),
    "label": ("locobank_cli.search", "label", "Name directions from a vocabulary."),
    "apply": ("locobank_cli.apply", "apply", "Apply catalog directions to your images."),
    "demo": ("locobank_cli.demo", "demo", "Run the whole pipeline on the toy world."),
    "sheet": ("locobank_cli.sheets", "sheet", "Draw a contact sheet of directions."),
    "gallery": ("locobank_cli.sheets", "gallery", "Write a static HTML gallery of the catalog."),
    "db": ("locobank_cli.db", "db", "Create or migrate the catalog."),
    "list": ("locobank_cli.browse", "list_cmd", "List the directions in the catalog."),
    "show": ("locobank_cli.browse", "show_cmd", "Show one direction and its provenance."),
    "stats": ("locobank_cli.browse", "stats_cmd", "Count jobs and directions in the catalog."),
    "export": ("locobank_cli.browse", "export_cmd", "Write directions to a safetensors pack."),
    "import": ("locobank_cli.browse", "import_cmd", "Add the directions of a pack to the catalog."),
    "serve": ("locobank_cli.serve", "serve", "Serve a web page to search and apply edits."),
}


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="locobank")
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """locobank: a searchable library of reusable LOCO Edit directions for diffusion models.

    Harvest edit directions from images and masks, keep them in a catalog, find them by
    text, and apply them to new images.
    """
    # Deprecation notices from inside torch and the libraries it loads are not the user's to act on.
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.* is deprecated")
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(torch|diffusers|transformers|open_clip)\b")
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def main() -> None:
    """Console-script entry point."""
    cli()


if __name__ == "__main__":
    main()

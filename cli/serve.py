"""``locobank serve``: the local web app (the ``app`` extra: pip install 'locobank[app]')."""

from __future__ import annotations

from pathlib import Path

import click

from .common import fail_on_library_errors
from .db import db_option


@click.command()
@db_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; any other than this machine's loopback needs --auth or --password-file.")
@click.option("--port", type=click.IntRange(1, 65535), default=7860, show_default=True, help="Port to listen on.")
@click.option("--device", default=None, help="cuda, cpu, ... [cuda when present]")
@click.option("--auth", metavar="USER:PASSWORD", default=None, help="Require this login to open the page.")
@click.option("--password-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="A file whose first line is USER:PASSWORD (keeps the password out of the shell history).")
@click.option("--clip", "clip_spec", default="toy", show_default=True, help="CLIP model the search index was built with.")
@click.option("--index", "index_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder of the search index [beside the catalog when `locobank demo` made it, else under "
                   "$LOCOBANK_HOME].")
@click.option("--threads", type=click.IntRange(1, 256), default=None,
              help="CPU threads for the models [one per core]; fewer keep a shared machine responsive.")
@fail_on_library_errors
def serve(db_url, host, port, device, auth, password_file, clip_spec, index_dir, threads):
    """Serve a web page to search the catalog by text and apply edits to your own images.

    \b
    locobank serve --db demo/catalog.db          # then open http://127.0.0.1:7860 (a path or a URL)
    locobank serve --host 0.0.0.0 --password-file login.txt

    The catalog is opened read-only. Uploads are PNG or JPEG, at most 20 MB and 4096x4096.
    """
    from locobank.app.access import check_bind, parse_auth

    login = parse_auth(auth, password_file)
    check_bind(host, login)  # before anything heavy loads
    try:
        from locobank.app.server import ServeOptions, start
    except ImportError as e:
        raise click.ClickException(f"the web app needs gradio ({e}); install it with: pip install 'locobank[app]'") from e
    opts = ServeOptions(db=db_url, host=host, port=port, device=device, auth=login, clip=clip_spec, index=index_dir,
                        threads=threads)
    click.echo(f"starting the app on http://{host}:{port} (Ctrl+C stops it)")
    start(opts, block=True)

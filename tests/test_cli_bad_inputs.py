"""Bad input through the CLI: every case below is refused before any work, with one short message
that names the problem and the fix, a non-zero exit, and never a Python traceback."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from locobank_cli.main import cli


@pytest.fixture()
def files(tmp_path):
    rgb = np.zeros((32, 32, 3), np.uint8)
    Image.fromarray(rgb).save(tmp_path / "face.png")
    Image.fromarray(rgb).save(tmp_path / "other.png")
    Image.fromarray(np.full((32, 32), 255, np.uint8)).save(tmp_path / "mask.png")
    folder = tmp_path / "faces"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray(rgb).save(folder / name)
    return tmp_path


CASES = [
    # (argv with {d} for the folder, what the message must say)
    (["apply", "29:nan", "{d}/face.png", "--out", "{d}/o.png"], "strength nan is out of range"),
    (["apply", "29:1e9", "{d}/face.png", "--out", "{d}/o.png"], "from -100 to 100"),
    (["apply", "29", "{d}/face.png", "--strength", "nan", "--out", "{d}/o.png"], "not a finite number"),
    (["apply", "29", "{d}/face.png", "--strength", "inf", "--out", "{d}/o.png"], "not a finite number"),
    (["apply", "29", "{d}/face.png", "--sweep", "", "--out", "{d}/o.png"], "holds no number"),
    (["apply", "29", "{d}/face.png", "--sweep", ",,,", "--out", "{d}/o.png"], "holds no number"),
    (["apply", "29", "{d}/face.png", "--sweep", "-8,nan", "--out", "{d}/o.png"], "out of range"),
    (["apply", "29", "{d}/face.png", "--out", "/proc/locobank-nope/o.png"], "cannot write under"),
    (["apply", "29", "{d}/face.png", "--out", "{d}/o.jpg"], "must end in .png"),
    (["apply", "-5", "{d}/face.png", "--out", "{d}/o.png"], "positive whole numbers"),
    (["apply", "smile", "{d}/face.png", "--out", "{d}/o.png"], "use --query 'smile'"),
    (["apply", "29", "{d}/face.png", "--strenght", "4", "--out", "{d}/o.png"], "no such option"),
    (["apply", "29", "{d}/faces", "--mask", "{d}/mask.png", "--out", "{d}/out"], "give each image its own with a pattern"),
    (["apply", "29", "{d}/faces", "--mask", "{d}/masks/{stem}_mouth.png", "--out", "{d}/out"],
     "2 mask files of the pattern {d}/masks/{stem}_mouth.png not found: {d}/masks/a_mouth.png, {d}/masks/b_mouth.png"),
    (["apply", "29", "{d}/faces", "--mask", "{d}/mask.png", "--mask", "{d}/{stem}.png", "--out", "{d}/out"],
     "give every mask as a pattern with {stem}, or none"),
    (["apply", "29", "{d}/face.png", "--candidates", "3", "--out", "{d}/o.png"], "give --query too"),
    (["apply", "29", "--query", "smile", "{d}/face.png", "--out", "{d}/o.png"], "not both"),
    (["apply", "29", "{d}/face.png", "--negative-prompt", "x", "--out", "{d}/o.png"],
     "--negative-prompt goes with --prompt"),
    (["apply", "29", "{d}/face.png", "--generate", "1", "--out", "{d}/o.png"], "give IMAGE files or --generate"),
    (["apply", "29", "{d}/faces", "--out", "{d}/face.png"], "--out '{d}/face.png' is a file"),
    (["apply", "--out", "{d}/o.png"], "give ID[:STRENGTH] (directions) or --query"),
    (["list", "--db", "postgresql://u:secret@host:abc/db"], "not a database URL"),
    (["search", "smile", "--min-score", "nan"], "not a finite number"),
    (["harvest", "--images", "{d}/faces", "--t-edit", "nan"], "not a finite number"),
    (["harvest", "--images", "{d}/faces", "--t-edit", "1.5"], "not a finite number in (0, 1)"),
    (["index", "build", "--strength", "-inf"], "not a finite number"),
]


@pytest.mark.parametrize("argv,says", CASES, ids=[" ".join(a[:3]) for a, _ in CASES])
def test_bad_input_gets_one_clear_message_and_no_traceback(files, argv, says):
    args = [a.replace("{d}", str(files)) for a in argv]
    res = CliRunner().invoke(cli, args)
    out = res.output
    assert res.exit_code not in (0, None), out
    assert isinstance(res.exception, SystemExit), repr(res.exception)  # an exit code, not a crash
    assert says.replace("{d}", str(files)) in out, out
    message = out.strip().split("Error: ")[-1]
    assert "\n\n" not in message and len(message) < 400, message  # one short paragraph
    assert "secret" not in out  # a password never reaches the terminal


def test_library_errors_name_parameters_and_the_cli_says_flags(tmp_path):
    """The library speaks Python (the request's fields, named in ``params``); only the CLI turns
    them into flags, and never inside a quoted path."""
    from locobank.apply import ApplyRequest, DirectionSpec
    from locobank.errors import ArgumentError
    from locobank_cli.common import as_typed

    with pytest.raises(ArgumentError) as bad:
        ApplyRequest(images=[tmp_path / "a.png"], out=tmp_path / "o.png", specs=[DirectionSpec(1)],
                     negative_prompt="x").check()
    assert str(bad.value) == "negative_prompt goes with prompt" and "--" not in str(bad.value)
    assert as_typed(bad.value) == "--negative-prompt goes with --prompt"
    out = tmp_path / "out"
    out.write_text("not a folder")
    with pytest.raises(ArgumentError) as bad:
        ApplyRequest(images=[tmp_path / "a.png", tmp_path / "b.png"], out=out, specs=[DirectionSpec(1)]).check()
    assert as_typed(bad.value) == f"--out {str(out)!r} is a file, but several images need a folder"

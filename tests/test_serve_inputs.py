"""What `locobank serve` lets in: who may connect, and which uploads it reads. Fast, no server."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from locobank.app import uploads
from locobank.app.access import check_bind, is_loopback, parse_auth
from locobank.errors import ArgumentError, InputError
from locobank_cli.main import cli


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1"])
def test_loopback_needs_no_password(host):
    assert is_loopback(host)
    check_bind(host, None)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.5", "::", "example.org"])
def test_any_other_address_needs_a_password(host):
    with pytest.raises(ArgumentError, match="--auth USER:PASSWORD or --password-file"):
        check_bind(host, None)
    check_bind(host, ("ann", "secret"))


def test_auth_comes_as_user_colon_password_or_from_a_file(tmp_path):
    assert parse_auth("ann:pa:ss") == ("ann", "pa:ss") and parse_auth() is None
    f = tmp_path / "login.txt"
    f.write_text("bob:hunter2\n")
    assert parse_auth(password_file=f) == ("bob", "hunter2")
    for bad in ("ann", "ann:", ":secret"):
        with pytest.raises(ArgumentError, match="USER:PASSWORD"):
            parse_auth(bad)
    with pytest.raises(ArgumentError, match="not both"):
        parse_auth("a:b", f)


def test_serve_refuses_an_open_address_without_a_password_before_loading_anything():
    r = CliRunner().invoke(cli, ["serve", "--host", "0.0.0.0", "--db", "sqlite:///nowhere/at/all.db"])
    assert r.exit_code == 2 and "would let other machines reach the app" in r.output
    r = CliRunner().invoke(cli, ["serve", "--auth", "nopassword"])
    assert r.exit_code == 2 and "USER:PASSWORD" in r.output


def test_an_upload_is_turned_upright_by_its_exif_orientation(tmp_path):
    a = np.zeros((20, 40, 3), np.uint8)
    a[:, :10] = 255  # a white band on the left of a wide image
    img = Image.fromarray(a)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90° clockwise to view"
    img.save(tmp_path / "photo.jpg", exif=exif, quality=95)
    up = uploads.read_image(tmp_path / "photo.jpg")
    assert up.size == (20, 40)  # upright: tall
    top = np.asarray(up)[:10].mean()
    assert top > 200 and np.asarray(up)[-10:].mean() < 50  # the band is now at the top


def test_uploads_must_be_small_png_or_jpeg(tmp_path, monkeypatch):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.gif")
    with pytest.raises(InputError, match="is GIF; upload a PNG or JPEG"):
        uploads.read_image(tmp_path / "a.gif")
    Image.new("1", (4097, 16)).save(tmp_path / "wide.png")
    with pytest.raises(InputError, match="4097x16 pixels; the limit is 4096x4096"):
        uploads.read_image(tmp_path / "wide.png")
    Image.new("RGB", (64, 64)).save(tmp_path / "ok.png")
    monkeypatch.setattr(uploads, "MAX_BYTES", 50)
    with pytest.raises(InputError, match="the limit is"):
        uploads.read_image(tmp_path / "ok.png")


def test_a_transparent_upload_lies_on_white_and_masks_keep_their_painted_part(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[2:4, 2:4] = (0, 0, 0, 255)
    Image.fromarray(rgba).save(tmp_path / "t.png")
    got = np.asarray(uploads.read_image(tmp_path / "t.png"))
    assert got[0, 0].tolist() == [255, 255, 255] and got[2, 2].tolist() == [0, 0, 0]
    m = uploads.read_mask(tmp_path / "t.png", [(8, 8)])
    assert m.sum() == 4 and m[2, 2]
    with pytest.raises(InputError, match="the mask is 8x8 but the image is 16x16"):
        uploads.read_mask(tmp_path / "t.png", [(16, 16)])
    assert uploads.square_mask(np.pad(m, ((0, 0), (4, 4))), 8).sum() == 4  # centre square kept

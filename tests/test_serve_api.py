"""`locobank serve` through its HTTP API, as gradio_client drives it, against a launched app on a
small catalog harvested with the shipped toy model: search, detail, apply, sweep, best of N, browse,
and bad requests answered with messages while the server keeps serving."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from locobank.errors import CatalogError
from locobank.search import search

pytest.importorskip("gradio", reason="the app extra is not installed: pip install -e '.[app]'")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

pytest_plugins = ["serve_world"]  # the toy_world and served_app fixtures


@pytest.fixture(scope="module")
def served(served_app):
    world, srv = served_app
    return world, srv, Client(srv.url, verbose=False)


def ids_of(gallery) -> list[int]:
    return [int(item["caption"].split()[0].lstrip("#")) for item in gallery]


def apply(client, image, *, mask=None, d1=None, s1=4.0, d2=None, s2=4.0, pick=None, seed=0):
    """The /apply endpoint: (input shown, result shown, PNG path, note)."""
    return client.predict(handle_file(str(image)) if image else None, pick, None,
                          handle_file(str(mask)) if mask else None, d1, s1, d2, s2, None, 4.0, False, seed,
                          api_name="/apply")


@pytest.mark.slow
def test_search_returns_the_librarys_hits_as_cards(served):
    world, srv, client = served
    gallery = client.predict("smile", "", "", 3, api_name="/search")
    expected = search(srv.resources.catalog, srv.resources.clip(), "smile", k=3, index_folder=world["index"])
    assert ids_of(gallery) == [h.id for h in expected] and len(expected) == 3
    for item, hit in zip(gallery, expected):
        for fact in (f"mask {hit.mask_label}", f"match {hit.match:.2f}", "consistency", "local 0.", f"t={hit.t_edit}",
                     f"apply at {hit.signed_strength:+.3g}"):
            assert fact in item["caption"]
        w, h = Image.open(item["image"]).size
        assert w == 3 * h  # the -λ, 0, +λ strip
    same = client.predict("smile", "local:toyfaces-ddpm", "mouth", 3, api_name="/search")
    assert ids_of(same) == [h.id for h in expected]
    assert client.predict("smile", "local:tiny32", "", 3, api_name="/search") == []  # its direction has no effect
    text, strip, source = client.predict(expected[0].id, api_name="/detail")
    assert f"#{expected[0].id}" in text and "face_1000000.png" in text and "mouth" in text
    assert Image.open(source).size[0] >= 32 and Image.open(strip).size[0] == 3 * Image.open(strip).size[1]


@pytest.mark.slow
def test_search_ranks_its_cards_for_an_uploaded_image(served):
    """With an image (and its mask), the cards are the library's image-aware ranking: each the
    hit's preview on that image, unedited then edited, at the strength calibrated there."""
    from locobank.rank import rank_for_image

    world, srv, client = served
    gallery = client.predict("smile", "", 3, handle_file(str(world["face"])), handle_file(str(world["mask"])),
                             api_name="/search_image")
    expected = rank_for_image(srv.resources.catalog, srv.resources.clip(), "smile", world["face"], mask=world["mask"],
                              index_folder=world["index"])
    assert ids_of(gallery) == [h.id for h in expected[:3]] and len(gallery) == 3
    for item, hit in zip(gallery, expected):
        assert f"apply at {hit.signed_strength:+.3g}" in item["caption"] and "gain on your image" in item["caption"]
        w, h = Image.open(item["image"]).size
        assert w == 2 * h  # unedited, edited
    with pytest.raises(AppError, match="give your image first"):
        client.predict("smile", "", 3, None, None, api_name="/search_image")


@pytest.mark.slow
def test_apply_changes_the_masked_part_and_hardly_the_rest(served):
    world, srv, client = served
    top = search(srv.resources.catalog, srv.resources.clip(), "smile", k=1, index_folder=world["index"])[0]
    before, after, png, note = apply(client, world["face"], mask=world["mask"], d1=str(top.id), s1=2 * top.signed_strength)
    result = np.asarray(Image.open(png).convert("RGB"), dtype=np.float32)
    source = np.asarray(Image.open(world["face"]).convert("RGB"), dtype=np.float32)
    inside = np.asarray(Image.open(world["mask"]).convert("L")) > 127
    change = np.abs(result - source).mean(-1)
    assert result.shape == source.shape
    assert change[inside].mean() > 4 * change[~inside].mean(), (change[inside].mean(), change[~inside].mean())
    assert change[inside].max() > 20 and change[~inside].mean() < 3
    assert f"applied #{top.id}" in note and "locality 0." in note
    assert Image.open(after).size == Image.open(before).size == (256, 256)


@pytest.mark.slow
def test_a_second_strength_reuses_the_inversion(served):
    world, srv, client = served
    cache = srv.resources.settled
    misses, hits = cache.misses, cache.hits
    first = apply(client, world["face2"], d1=str(world["toy_ids"][0]), s1=4.0)
    second = apply(client, world["face2"], d1=str(world["toy_ids"][0]), s1=-6.0)
    assert (cache.misses, cache.hits) == (misses + 1, hits + 1)
    a, b = (np.asarray(Image.open(r[2]), dtype=np.float32) for r in (first, second))
    assert np.abs(a - b).mean() > 1.0


@pytest.mark.slow
def test_sweep_best_of_and_browse(served):
    world, srv, client = served
    strip, png = client.predict(handle_file(str(world["face"])), None, None, handle_file(str(world["mask"])),
                                "-4,0,4", str(world["toy_ids"][0]), 4.0, None, 4.0, None, 4.0, 0, api_name="/sweep")
    assert Image.open(png).size == (3 * 32, 32)
    _, after, best_png, note = client.predict(handle_file(str(world["face"])), None, None,
                                              handle_file(str(world["mask"])), "smile", 2, 0, api_name="/best_of")
    assert note.startswith("kept #") and Image.open(best_png).size == (32, 32)
    stats, runs, failed, recent = client.predict(api_name="/browse")
    assert f"directions: {len(world['toy_ids'] + world['other_ids'])} " in stats and "read-only" in stats
    assert [r[0] for r in runs["data"]] == [1, 2] and failed["data"] in ([], [["", "", "", "", "", ""]])
    assert sorted(int(r[0]) for r in recent["data"]) == world["toy_ids"] + world["other_ids"]


@pytest.mark.slow
def test_a_catalog_image_can_be_picked_instead_of_an_upload(served):
    world, srv, client = served
    editor = client.predict(None, str(world["toy_ids"][0]), None, api_name="/load_image")
    assert editor["background"] is not None and len(editor["layers"]) == 1  # the catalog's mask, painted
    _, _, png, note = apply(client, None, pick=str(world["toy_ids"][0]), d1=str(world["toy_ids"][1]), s1=4.0)
    assert Image.open(png).size == (32, 32)


def _bad_files(tmp):
    text = tmp / "notes.png"
    text.write_text("not an image")
    huge = tmp / "huge.png"
    Image.new("1", (5000, 5000)).save(huge)  # a few kB on disk, 25 megapixels decoded
    small = tmp / "small_mask.png"
    Image.new("L", (20, 20), 255).save(small)
    return text, huge, small


@pytest.mark.slow
def test_bad_requests_get_their_message_and_the_server_keeps_serving(served, tmp_path):
    world, srv, client = served
    text, huge, small = _bad_files(tmp_path)
    toy, other = str(world["toy_ids"][0]), str(world["other_ids"][0])
    bad = [
        (dict(image=world["face"], d1="999999"), "Not found: .*999999"),
        (dict(image=world["face"], d1=toy, d2=other), "different models"),
        (dict(image=world["face"], mask=small, d1=toy), "the mask is 20x20 but the image is 32x32"),
        (dict(image=text, d1=toy), "not a PNG or JPEG"),
        (dict(image=huge, d1=toy), "5000x5000 pixels; the limit is 4096x4096"),
        (dict(image=None, d1=toy), "upload an image, or pick one"),
        (dict(image=world["face"], d1="smile"), "is not a direction id"),
        (dict(image=world["face"]), "pick at least one direction"),
    ]
    for kwargs, message in bad:
        with pytest.raises(AppError, match=message):
            apply(client, **kwargs)
        assert ids_of(client.predict("smile", "", "", 2, api_name="/search"))  # still serving
    with pytest.raises(AppError, match="Not found"):
        client.predict(424242, api_name="/detail")
    with pytest.raises(AppError, match="query is empty|type what the edit"):
        client.predict("  ", "", "", 2, api_name="/search")
    assert Image.open(apply(client, world["face"], d1=toy)[2]).size == (32, 32)


@pytest.mark.slow
def test_the_app_cannot_write_to_its_catalog(served):
    world, srv, _ = served
    with pytest.raises(CatalogError, match="readonly|read-only"):
        srv.resources.catalog.set_label(world["toy_ids"][0], "vandalised", 1.0, 1)
    assert srv.resources.catalog.get_direction(world["toy_ids"][0]).label != "vandalised"

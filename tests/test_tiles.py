"""Point tiles, thumbnail atlases and selection by polygon (app/maps/tiles.py, app/maps/selection.py)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from app.maps.store import NewItem, Store
from app.maps.tiles import build_index, cut_tile
from app.settings import Settings
from tests.helpers import png_bytes


def clustered(seed: int = 0):
    """40 Gaussian clusters of very different sizes, plus a 3-point cluster far from everything."""
    rng = np.random.default_rng(seed)
    centers = rng.uniform(-10, 10, (40, 2))
    sizes = rng.integers(20, 6000, 40)
    xy = np.concatenate(
        [c + rng.normal(0, 0.25, (k, 2)) for c, k in zip(centers, sizes)]
        + [np.array([[14.0, -14.0], [14.02, -14.0], [14.0, -13.98]])]
    ).astype(np.float32)
    labels = np.concatenate([np.full(k, i) for i, k in enumerate(sizes)] + [np.full(3, 40)])
    return xy, labels, np.vstack([centers, [[14.0, -14.0]]])


def index_of(xy, settings, pictured=None):
    n = len(xy)
    pictured = np.ones(n, bool) if pictured is None else pictured
    return build_index("m", xy, np.ones(n, np.uint8), pictured, np.array([f"i{k}" for k in range(n)], "S"), 1, settings)


def box_of(index, z, x, y):
    s = index.size / 2**z
    x0, y0 = index.origin[0] + x * s, index.origin[1] + index.size - (y + 1) * s
    return x0, y0, x0 + s, y0 + s


def test_tiles_are_capped_nested_and_keep_every_cluster():
    xy, labels, _ = clustered()
    settings = Settings(tile_points=500)
    index = index_of(xy, settings)
    top = cut_tile(index, 0, 0, 0, settings.tile_thumbs_side)
    assert len(top.indices) == 500 < len(xy)
    # Zoomed all the way out, every cluster still shows, the 3-point one included.
    assert set(labels[top.indices]) == set(range(41))
    # Density survives: the biggest cluster shows more points than the smallest.
    sizes = np.bincount(labels)
    shown = np.bincount(labels[top.indices], minlength=41)
    assert shown[sizes.argmax()] > shown[sizes[:40].argmin()]
    for z in (1, 2, 3):
        for x in range(2**z):
            for y in range(2**z):
                tile = cut_tile(index, z, x, y, settings.tile_thumbs_side)
                assert len(tile.indices) <= 500
                x0, y0, x1, y1 = box_of(index, z, x, y)
                inside = (xy[:, 0] >= x0) & (xy[:, 0] < x1) & (xy[:, 1] >= y0) & (xy[:, 1] < y1)
                # The tile holds only its own points, and everything its parent showed there (zoom only adds).
                assert inside[tile.indices].all()
                parent = cut_tile(index, z - 1, x // 2, y // 2, settings.tile_thumbs_side)
                assert set(parent.indices[inside[parent.indices]]) <= set(tile.indices)
                if inside.sum() <= 500:
                    assert len(tile.indices) == inside.sum()
    # Deep enough, every point is in some tile.
    deepest = max(int(index.level.max()), 0)
    assert deepest <= settings.tile_max_zoom


def test_thumbnails_one_per_cell_and_stay_when_zooming_in():
    xy, _, _ = clustered(1)
    settings = Settings(tile_points=300, tile_thumbs_side=4)
    pictured = np.arange(len(xy)) % 3 == 0  # a third of the items have pictures
    index = index_of(xy, settings, pictured)
    top = cut_tile(index, 0, 0, 0, 4)
    assert 0 < len(top.thumb_indices) <= 16
    assert pictured[top.thumb_indices].all()
    cell = index.size / 4
    cells = {(int((x - index.origin[0]) // cell), int((y - index.origin[1]) // cell)) for x, y in top.thumb_xy}
    assert len(cells) == len(top.thumb_indices)  # never two pictures in one cell
    children = set()
    for x in range(2):
        for y in range(2):
            children |= set(cut_tile(index, 1, x, y, 4).thumb_indices.tolist())
    assert set(top.thumb_indices.tolist()) <= children  # zooming in adds pictures, none is swapped away


def test_same_items_same_tiles():
    xy, _, _ = clustered(2)
    a, b = index_of(xy, Settings(tile_points=200)), index_of(xy, Settings(tile_points=200))
    assert cut_tile(a, 2, 1, 2, 8).encode() == cut_tile(b, 2, 1, 2, 8).encode()
    assert a.fingerprint != index_of(xy, Settings(tile_points=201)).fingerprint


def _parse_tile(data: bytes):
    assert data[:4] == b"LMT1"
    n, m = np.frombuffer(data, "<u4", 2, 4)
    off = 12

    def take(dtype, count):
        nonlocal off
        a = np.frombuffer(data, dtype, count, off)
        off += a.nbytes
        return a

    idx, x, y = take("<u4", n), take("<f4", n), take("<f4", n)
    tidx, tx, ty = take("<u4", m), take("<f4", m), take("<f4", m)
    kinds = take("u1", n)
    (length,) = take("<u4", 1)
    ids = data[off : off + length].decode().split("\n") if length else []
    assert off + length == len(data) and len(ids) == m
    return idx, np.stack([x, y], 1), tidx, np.stack([tx, ty], 1), kinds, ids


def test_tile_api_atlas_etag_and_errors(client, new_map):
    map_id, key = new_map
    colors = [(220, 30, 30), (30, 200, 40), (40, 60, 220), (240, 220, 30), (20, 20, 20)]
    files = [("files", (f"c{i}.png", png_bytes(c, (48, 48)), "image/png")) for i, c in enumerate(colors)]
    items = client.post(f"/api/maps/{map_id}/images", files=files, headers=key).json()["items"]
    client.post(f"/api/maps/{map_id}/prompts", json={"prompts": ["a red square", "a blue square"]}, headers=key)
    info = client.get(f"/api/maps/{map_id}/tiles").json()
    assert info["count"] == 7 and info["pictures"] >= 5
    v = info["version"]
    r = client.get(f"/api/maps/{map_id}/tiles/0/0/0.bin?v={v}")
    assert r.status_code == 200 and "immutable" in r.headers["cache-control"]
    idx, xy, tidx, txy, kinds, ids = _parse_tile(r.content)
    points = client.get(f"/api/maps/{map_id}/points").json()["points"]
    assert ids == [points[i]["id"] for i in tidx]  # the page fetches these items' own thumbnails for close-ups
    assert sorted(idx.tolist()) == list(range(7))
    codes = {"text": 0, "image": 1, "generated": 2}
    for i, p, kind in zip(idx, xy, kinds):
        assert points[i]["x"] == pytest.approx(float(p[0]), abs=1e-5)
        assert kind == codes[points[i]["kind"]]
    for i, p in zip(tidx, txy):
        assert points[i]["thumbnail"] and points[i]["y"] == pytest.approx(float(p[1]), abs=1e-5)
    # Five pictures of five colours spread over the map: the atlas holds each picture in its slot.
    atlas = Image.open(io.BytesIO(client.get(f"/api/maps/{map_id}/tiles/0/0/0.webp?v={v}").content)).convert("RGBA")
    side, px = info["thumbs_side"], info["thumb_px"]
    by_id = {it["id"]: colors[k] for k, it in enumerate(items)}
    checked = 0
    for slot, i in enumerate(tidx):
        if points[i]["id"] in by_id:
            centre = atlas.getpixel(((slot % side) * px + px // 2, (slot // side) * px + px // 2))
            assert np.abs(np.array(centre[:3]) - by_id[points[i]["id"]]).max() < 24
            checked += 1
    assert checked >= 1
    # ETag revalidation, stale versions, tiles outside the square.
    etag = r.headers["etag"]
    again = client.get(f"/api/maps/{map_id}/tiles/0/0/0.bin?v={v}", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    current = client.get(f"/api/maps/{map_id}/tiles/0/0/0.bin")
    assert current.headers["etag"] == etag and "no-cache" in current.headers["cache-control"]
    assert client.get(f"/api/maps/{map_id}/tiles/1/2/0.bin").status_code == 404
    assert client.get(f"/api/maps/{map_id}/tiles/40/0/0.bin").status_code == 404
    client.post(f"/api/maps/{map_id}/prompts", json={"prompts": ["a green square"]}, headers=key)
    stale = client.get(f"/api/maps/{map_id}/tiles/0/0/0.bin?v={v}")
    assert stale.status_code == 409 and "version" in stale.json()["detail"]
    fresh = client.get(f"/api/maps/{map_id}/tiles/0/0/0.bin", headers={"If-None-Match": etag})
    assert fresh.status_code == 200 and fresh.headers["etag"] != etag


@pytest.fixture(scope="module")
def lattice_map(tmp_path_factory):
    """A 200,000-point map written straight into a store: a 500 × 400 lattice at half-integer positions, so no
    point lies on an edge of an integer-vertex polygon and the right count is plain arithmetic."""
    data_dir = tmp_path_factory.mktemp("lattice") / "data"
    store = Store(data_dir)
    record, _ = store.create_map("lattice", "tiny-random")
    gx, gy = np.meshgrid(np.arange(500) + 0.5, np.arange(400) + 0.5)
    xy = np.stack([gx.ravel(), gy.ravel()], 1).astype(np.float32)
    vec = np.zeros(8, np.float32)
    for start in range(0, len(xy), 50_000):
        part = xy[start : start + 50_000]
        store.add_items(
            record.id,
            [NewItem(kind="text", label=f"p{start + i}", vector=vec, decode_vector=vec) for i in range(len(part))],
            part,
            projection={"method": "umap", "revision": 1, "fitted_count": len(xy)} if start == 0 else None,
        )
    store.close()
    return data_dir, record.id


def test_polygon_selection_on_a_200k_point_map(make_client, lattice_map):
    data_dir, map_id = lattice_map
    client = make_client(data_dir, create_demo_map=False)
    version = int(client.get(f"/api/maps/{map_id}/points.bin").headers["x-map-version"])
    # An L: [0,300]×[0,100] plus [0,100]×[100,400] → 300·100 + 100·300 lattice points; non-convex on purpose.
    ell = [[0, 0], [300, 0], [300, 100], [100, 100], [100, 400], [0, 400]]
    r = client.post(f"/api/maps/{map_id}/selection", json={"polygon": ell, "version": version, "format": "count"})
    assert r.status_code == 200, r.text
    assert r.json()["count"] == 60_000
    # A triangle counted by hand: points (i + .5, j + .5) with x + y < 200 inside [0,200]², i + j ≤ 198.
    tri = [[0, 0], [200, 0], [0, 200]]
    expected = sum(199 - i for i in range(199))
    out = client.post(f"/api/maps/{map_id}/selection", json={"polygon": tri, "version": version}).json()
    assert out["count"] == expected == len(out["items"])
    assert all(it["x"] + it["y"] < 200 for it in out["items"])
    # Bad polygons and stale versions.
    assert client.post(f"/api/maps/{map_id}/selection", json={"polygon": [[0, 0], [1, 1]]}).status_code == 422
    assert (
        client.post(
            f"/api/maps/{map_id}/selection", json={"polygon": [[0, 0], [1, 1], [1, 0]], "item_ids": ["x"]}
        ).status_code
        == 422
    )
    stale = client.post(f"/api/maps/{map_id}/selection", json={"polygon": ell, "version": version - 1})
    assert stale.status_code == 409


def test_a_big_maps_tile_index_is_saved_and_read_back(tmp_path, monkeypatch):
    """From tile_index_file_min_items points the index is saved beside the map's arrays: a restarted server
    reads it (the same tiles, nothing built), a damaged file is built again, a new version replaces the file."""
    from app.maps import tiles

    settings = Settings(data_dir=tmp_path / "data", tile_points=300, tile_index_file_min_items=1_000)
    store = Store(settings.data_dir)
    record, _ = store.create_map("saved tiles", "tiny-random")
    xy, _, _ = clustered(3)
    xy = xy[:3_000]
    vec = np.zeros(8, np.float32)
    store.add_items(
        record.id,
        [NewItem(kind="text", label=f"p{i}", vector=vec, decode_vector=vec) for i in range(len(xy))],
        xy,
        projection={"method": "umap", "revision": 1, "fitted_count": len(xy)},
    )
    built = tiles.PointTiles(store, settings).index(record.id)
    saved = list((settings.data_dir / "arrays" / record.id).glob("tiles-v*.npz"))
    assert [p.name for p in saved] == [f"tiles-v{built.version}-{built.fingerprint}.npz"]

    def tile_bytes(index):
        return [cut_tile(index, z, x, y, 8).encode() for z, x, y in ((0, 0, 0), (1, 0, 1), (2, 1, 2), (3, 2, 5))]

    def no_build(*args, **kwargs):
        raise AssertionError("the saved index should have been read")

    with monkeypatch.context() as m:
        m.setattr(tiles, "build_index", no_build)
        read = tiles.PointTiles(store, settings).index(record.id)  # a restarted server
    assert (read.version, read.origin, read.size, read.fingerprint) == (
        built.version,
        built.origin,
        built.size,
        built.fingerprint,
    )
    assert tile_bytes(read) == tile_bytes(built)

    saved[0].write_bytes(saved[0].read_bytes()[:1000])  # cut short (a disk full, a copy interrupted)
    again = tiles.PointTiles(store, settings).index(record.id)
    assert tile_bytes(again) == tile_bytes(built)
    with monkeypatch.context() as m:
        m.setattr(tiles, "build_index", no_build)
        assert tile_bytes(tiles.PointTiles(store, settings).index(record.id)) == tile_bytes(built)  # rewritten whole

    store.add_items(
        record.id, [NewItem(kind="text", label="new", vector=vec, decode_vector=vec)], np.array([[0.0, 0.0]])
    )
    newer = tiles.PointTiles(store, settings).index(record.id)
    assert newer.count == 3_001
    names = [p.name for p in (settings.data_dir / "arrays" / record.id).glob("tiles-v*.npz")]
    assert names == [f"tiles-v{newer.version}-{newer.fingerprint}.npz"]  # the old version's file is gone

    small = Settings(data_dir=settings.data_dir, tile_points=300, tile_index_file_min_items=10_000)
    for old in (settings.data_dir / "arrays" / record.id).glob("tiles-v*.npz"):
        old.unlink()
    tiles.PointTiles(store, small).index(record.id)
    assert not list((settings.data_dir / "arrays" / record.id).glob("tiles-v*.npz"))  # small maps: memory only
    store.close()


def _rgba_png(draw_on) -> bytes:
    from PIL import ImageDraw

    im = Image.new("RGBA", (48, 48), (0, 0, 0, 0))
    draw_on(ImageDraw.Draw(im))
    out = io.BytesIO()
    im.save(out, "PNG")
    return out.getvalue()


def test_dark_line_art_is_drawn_on_a_plate_and_colourful_pictures_keep_their_transparency(client, new_map):
    """The map is dark: black line art on transparency would vanish there (as it does on a black model input).
    The atlas and the close-up thumbnail (on=dark-map) put it on a light plate; a colourful picture with
    transparency keeps it; the plain thumbnail is the stored one, alpha and all."""
    from app import imaging

    map_id, key = new_map
    line_art = _rgba_png(
        lambda d: (
            d.line((4, 4, 44, 44), fill=(0, 0, 0, 255), width=5),
            d.line((4, 44, 44, 4), fill=(0, 0, 0, 255), width=5),
        )
    )
    disc = _rgba_png(lambda d: d.ellipse((6, 6, 42, 42), fill=(70, 150, 235, 255)))
    files = [("files", ("line.png", line_art, "image/png")), ("files", ("disc.png", disc, "image/png"))]
    items = client.post(f"/api/maps/{map_id}/images", files=files, headers=key).json()["items"]
    line_id, disc_id = (it["id"] for it in items)

    def picture(item_id, **params):
        r = client.get(f"/api/items/{item_id}/thumbnail", params=params)
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        return r.content, Image.open(io.BytesIO(r.content)).convert("RGBA")

    for item_id in (line_id, disc_id):  # stored as uploaded: transparent corners
        assert picture(item_id)[1].getpixel((0, 0))[3] == 0
    plated = picture(line_id, on="dark-map")[1]
    assert plated.getpixel((0, 0)) == (*imaging.PLATE_RGB, 255)  # the plate, opaque
    centre = plated.getpixel((plated.width // 2, plated.height // 2))
    assert max(centre[:3]) < 40 and centre[3] == 255  # the ink stays black
    assert picture(disc_id, on="dark-map")[0] == picture(disc_id)[0]  # bright enough: the same bytes
    assert client.get(f"/api/items/{line_id}/thumbnail", params={"on": "paper"}).status_code == 422

    info = client.get(f"/api/maps/{map_id}/tiles").json()
    tile = client.get(f"/api/maps/{map_id}/tiles/0/0/0.bin?v={info['version']}").content
    ids = _parse_tile(tile)[5]
    atlas = Image.open(io.BytesIO(client.get(f"/api/maps/{map_id}/tiles/0/0/0.webp?v={info['version']}").content))
    atlas = atlas.convert("RGBA")
    side, px = info["thumbs_side"], info["thumb_px"]

    def cell_corner(item_id):
        slot = ids.index(item_id)
        return np.array(atlas.getpixel(((slot % side) * px + 1, (slot // side) * px + 1)))

    assert cell_corner(line_id)[3] > 240 and np.abs(cell_corner(line_id)[:3] - imaging.PLATE_RGB).max() < 12
    assert cell_corner(disc_id)[3] < 16

"""`latentmap build` on real-looking collections: folder trees, tables, transparency, interrupted builds."""

import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from app import imaging
from app.ingest import local, sources
from app.jobs import WorkQueue
from app.maps.service import MapService
from app.maps.store import Store
from tests.helpers import make_settings

ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def _cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "build", "--space", "tiny-random", "--quiet", *args],
        check=False,
        capture_output=True,
        text=True,
        env={**ENV, **(env or {})},
        timeout=300,
    )


def _png(color, size=(24, 20), mode="RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def tree(tmp_path):
    """animals/mammals/cats, animals/birds, food (with a corrupt file), an oversized picture at the top, a
    symlink out of the tree, a link back into it (followed, listed once), and a file that is not a picture."""
    root = tmp_path / "tree"
    for folder, n, colour in (
        ("animals/mammals/cats", 3, (200, 40, 40)),
        ("animals/birds", 2, (40, 200, 40)),
        ("food", 2, (40, 40, 200)),
    ):
        (root / folder).mkdir(parents=True)
        for i in range(n):
            (root / folder / f"{i}.png").write_bytes(_png(tuple(c + 5 * i for c in colour)))
    (root / "food" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    (root / "huge.png").write_bytes(_png((1, 2, 3), size=(2100, 2000)))
    outside = tmp_path / "private"
    outside.mkdir()
    (outside / "secret.png").write_bytes(_png((9, 9, 9)))
    (root / "food" / "escape.png").symlink_to(outside / "secret.png")
    (root / "food" / "escape_dir").symlink_to(outside)
    (root / "birds_again").symlink_to(root / "animals" / "birds")
    (root / "notes.txt").write_text("not a picture")
    (outside / "config.txt").write_text("not a picture either")
    (root / "food" / "config.txt").symlink_to(outside / "config.txt")  # not a picture: ignored, not named
    (root / "food" / "gone.png").symlink_to(outside / "deleted.png")  # a picture's name: named
    return root


def test_folder_tree_cli(tree, tmp_path):
    limits = {"LATENTMAP_MAX_IMAGE_PIXELS": "4000000"}
    r = _cli("--data-dir", str(tmp_path / "data"), "--images", str(tree), "--title", "Tree", env=limits)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert (out["count"], out["added"], out["skipped"]) == (7, 7, 5)
    skipped = dict(
        line.removeprefix("skipped ").split(": ", 1) for line in r.stderr.splitlines() if line.startswith("skipped ")
    )
    assert set(skipped) == {"food/corrupt.jpg", "huge.png", "food/escape.png", "food/escape_dir", "food/gone.png"}
    assert skipped["food/gone.png"] == "broken symlink" and "ignored 2 files that are not pictures" in r.stderr
    assert "limit is 4,000,000 pixels" in skipped["huge.png"]  # our message, naming our limit
    assert "outside the folder" in skipped["food/escape.png"]
    assert r.stderr.strip().splitlines()[-1].startswith("added 7, skipped 5")
    opening = (
        f"to open it: latentmap serve --data-dir {tmp_path / 'data'}, then http://127.0.0.1:8000/m/{out['id']}#key="
    )
    assert opening in r.stderr

    store = Store(tmp_path / "data")
    column = store.column(out["id"], "folder")
    values, _ = store.column_values(out["id"], column)
    labels = [p.label for p in store.points(out["id"])]
    assert sorted(zip(values, labels)) == [
        ("animals/birds", "0.png"),
        ("animals/birds", "1.png"),
        ("animals/mammals/cats", "0.png"),
        ("animals/mammals/cats", "1.png"),
        ("animals/mammals/cats", "2.png"),
        ("food", "0.png"),
        ("food", "1.png"),
    ]
    assert "secret.png" not in labels

    # --strict: the same skips are an error, and nothing is added
    r = _cli("--data-dir", str(tmp_path / "strict"), "--images", str(tree), "--strict", env=limits)
    assert r.returncode == 1 and "food/corrupt.jpg" in r.stderr and "nothing was added" in r.stderr
    assert Store(tmp_path / "strict").list_maps() == []


def _service(tiny_space, data_dir, **overrides) -> MapService:
    settings = make_settings(data_dir, place_refine_epochs=0, defer_prompt_images=False, **overrides)
    return MapService(Store(data_dir), tiny_space, settings, WorkQueue(1))


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_table_with_metadata_columns(fmt, tmp_path, tiny_space):
    pics = tmp_path / "pics"
    pics.mkdir()
    rows = []
    for i in range(8):
        (pics / f"p{i}.png").write_bytes(_png((30 * i, 10, 200 - 20 * i)))
        rows.append(
            {
                "path": f"pics/p{i}.png",
                "caption": f"picture number {i} of a colour ramp",
                "price": 1.5 * i if i != 3 else None,
                "shop": ["north", "south"][i % 2],
            }
        )
    rows.append({"path": "../elsewhere.png", "caption": "x", "price": 1.0, "shop": "north"})
    table = tmp_path / f"t.{fmt}"
    if fmt == "csv":
        import csv

        with table.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), table)
    service = _service(tiny_space, tmp_path / "data")
    settings = service.settings
    source = sources.table_source(table, settings, image="path", text="caption")
    assert source.columns == {"caption": "text", "price": "number", "shop": "category"}
    assert [s.reason for s in source.skipped] == ["image path leads outside the table's folder (--any-path allows it)"]
    result = local.build(service, source, "Table", progress=False)
    assert result.added == 8
    store = service.store
    values, _ = store.column_values(result.map_id, store.column(result.map_id, "price"))
    labels = [p.label for p in store.points(result.map_id)]
    by_label = dict(zip(labels, values))
    assert by_label["p2.png"] == 3.0 and by_label["p3.png"] is None
    summary = store.column_summary(store.column(result.map_id, "price"), result.map_id, 10)
    assert (summary["min"], summary["max"], summary["count"]) == (0.0, 10.5, 7)
    service.close()

    # the product API: GET /columns, one column for all points as a binary array, items carry their columns
    from fastapi.testclient import TestClient

    from app.main import create_app

    with TestClient(create_app(make_settings(tmp_path / "data"), space=tiny_space)) as client:
        cols = {c["name"]: c for c in client.get(f"/api/maps/{result.map_id}/columns").json()["columns"]}
        assert cols["shop"]["type"] == "category"
        assert cols["shop"]["categories"] == [{"value": "north", "count": 4}, {"value": "south", "count": 4}]
        assert (cols["price"]["type"], cols["price"]["min"], cols["price"]["max"]) == ("number", 0.0, 10.5)
        assert cols["caption"]["type"] == "text" and cols["caption"]["count"] == 8
        points = client.get(f"/api/maps/{result.map_id}/points").json()["points"]
        assert points[2]["columns"] == {"caption": "picture number 2 of a colour ramp", "price": 3.0, "shop": "north"}
        assert client.get(f"/api/maps/{result.map_id}/points/3").json()["columns"]["shop"] == "south"

        def values(**params):
            r = client.get(f"/api/maps/{result.map_id}/columns/values.bin", params=params)
            assert r.status_code == 200, r.text
            head_len = int.from_bytes(r.content[4:8], "little")
            header = json.loads(r.content[8 : 8 + head_len])
            dtype = {"float32": "<f4", "uint32": "<u4", "uint8": "u1"}[header["encoding"]]
            return header, np.frombuffer(r.content[8 + head_len :], dtype=dtype)

        header, shop = values(name="shop")
        assert [header["categories"][c] for c in shop] == [p["columns"]["shop"] for p in points]
        _, price = values(name="price")
        assert np.isnan(price[3]) and price[7] == 10.5
        _, match = values(name="caption", contains="NUMBER 5")
        assert match.tolist() == [int(p["label"] == "p5.png") for p in points]
        values = client.get(f"/api/maps/{result.map_id}/columns/values.bin", params={"name": "caption"})
        assert values.status_code == 422
        assert client.get(f"/api/maps/{result.map_id}/columns/values.bin", params={"name": "nope"}).status_code == 404
        if fmt == "csv":  # selection exports and bundles carry the columns
            r = client.post(
                f"/api/maps/{result.map_id}/selection", json={"item_ids": [points[1]["id"]], "format": "csv"}
            )
            assert r.text.splitlines()[0] == "id,kind,label,x,y,caption,price,shop"
            assert r.text.splitlines()[1].endswith("picture number 1 of a colour ramp,1.5,south")
            from app.maps.bundle import export_bundle, import_bundle

            copy, _ = import_bundle(client.app.state.service, export_bundle(store, result.map_id), title="copy")
            copied = client.get(f"/api/maps/{copy.id}/points").json()["points"]
            assert [p["columns"] for p in copied] == [p["columns"] for p in points]
            assert (
                client.get(f"/api/maps/{copy.id}/columns").json()
                == client.get(f"/api/maps/{result.map_id}/columns").json()
            )


def test_table_of_prompts_and_of_vectors(tmp_path, tiny_space):
    service = _service(tiny_space, tmp_path / "data")
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(
        "\n".join(
            json.dumps({"prompt": p, "topic": t})
            for p, t in [("a red apple", "fruit"), ("a green pear", "fruit"), ("a tall tree", "plant")]
        )
    )
    first = local.build(service, sources.table_source(prompts, service.settings, text="prompt"), "P", progress=False)
    assert first.added == 3
    assert sorted(p.label for p in service.store.points(first.map_id)) == ["a green pear", "a red apple", "a tall tree"]

    # precomputed vectors: no model call; the item's vector is the row's vector; wrong sizes are named
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(5, tiny_space.dim)).astype(np.float32)
    rows = [{"id": f"v{i}", "emb": vectors[i].tolist()} for i in range(5)] + [{"id": "bad", "emb": [1.0, 2.0]}]
    table = tmp_path / "v.jsonl"
    table.write_text("\n".join(json.dumps(r) for r in rows))
    source = sources.table_source(table, service.settings, vector="emb", label="id", dim=tiny_space.dim)
    assert [s.reason for s in source.skipped] == [f"vector has 2 numbers; this space's vectors have {tiny_space.dim}"]
    calls = []
    tiny_space.encode_prepared, original = (lambda *a: calls.append(a)), tiny_space.encode_prepared
    try:
        result = local.build(service, source, "V", progress=False)
    finally:
        tiny_space.encode_prepared = original
    assert result.added == 5 and not calls
    arrays = service.store.get_arrays(result.map_id)
    got = dict(zip(arrays.labels, arrays.vectors))
    np.testing.assert_allclose(got["v4"], vectors[4])
    service.close()


def test_transparent_pictures_are_encoded_on_white_and_keep_alpha_in_thumbnails(tmp_path, tiny_space):
    """Black line art on a transparent background: the model sees it on white (as it would be on white paper),
    the thumbnail keeps the transparency."""
    art = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    for i in range(32):
        art.putpixel((i, i), (0, 0, 0, 255))
    on_paper = Image.new("RGB", (32, 32), (255, 255, 255))
    for i in range(32):
        on_paper.putpixel((i, i), (0, 0, 0))
    folder = tmp_path / "art"
    folder.mkdir()
    buf = io.BytesIO()
    art.save(buf, format="PNG")
    (folder / "line.png").write_bytes(buf.getvalue())
    art.convert("P").save(folder / "palette.gif", transparency=0)  # palette with a transparent index
    service = _service(tiny_space, tmp_path / "data")
    result = local.build(service, sources.folder_source(folder, service.settings), "Art", progress=False)
    arrays = service.store.get_arrays(result.map_id)
    paper = tiny_space.encode_images([on_paper]).vectors[0]
    black = tiny_space.encode_images([Image.new("RGB", (32, 32))]).vectors[0]
    line = arrays.vectors[arrays.labels.index("line.png")]
    np.testing.assert_allclose(line, paper, rtol=1e-4, atol=1e-5)
    assert not np.allclose(line, black, atol=1e-3)
    from app.maps.bundle import export_bundle, import_bundle

    copy, _ = import_bundle(service, export_bundle(service.store, result.map_id))
    for point in service.store.points(result.map_id) + service.store.points(copy.id):  # bundles keep it too
        thumb = Image.open(io.BytesIO(service.store.read_thumbnail(point.id)))
        assert thumb.mode == "RGBA" and thumb.getextrema()[3][0] == 0, point.label  # transparent pixels kept
    assert imaging.open_image((folder / "line.png").read_bytes(), 10**6).getpixel((0, 5)) == (255, 255, 255)
    service.close()


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA", "P", "PA", "I;16", "1"])
def test_thumbnail_png_reads_back_as_the_same_pixels(mode):
    """Thumbnails are written by our own Sub-filter encoder: any reader gets exactly the pixels, alpha kept
    (modes PNG cannot hold as 8-bit channels come back as RGB, or RGBA with transparency)."""
    rng = np.random.default_rng(3)
    noise = Image.fromarray(rng.integers(0, 256, (37, 53, 4), dtype=np.uint8), "RGBA")
    smooth = noise.resize((5, 4)).resize((53, 37), Image.Resampling.BICUBIC)  # long runs and small steps
    for picture in (noise, smooth):
        im = picture.convert("P").convert("PA") if mode == "PA" else picture.convert(mode)
        expected = im if mode in ("L", "LA", "RGB", "RGBA") else im.convert("RGBA" if imaging.has_alpha(im) else "RGB")
        got = Image.open(io.BytesIO(imaging.sub_filtered_png(im)))
        got.load()
        assert got.format == "PNG" and got.mode == expected.mode
        np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))
    assert Image.open(io.BytesIO(imaging.thumbnail_png(noise, 16))).size == (16, 11)


def _saved_png(im: Image.Image, **params) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG", **params)
    return buf.getvalue()


def test_pngs_decode_to_the_pixels_pillow_gives(monkeypatch):
    """8-bit grey/RGB PNGs (with or without alpha) are decoded by libspng, faster; every other PNG by Pillow.
    Either way open_image returns exactly what Pillow's decoder gives, orientation and first frames included."""
    from PIL import PngImagePlugin

    rng = np.random.default_rng(5)
    noise = Image.fromarray(rng.integers(0, 256, (41, 67, 4), dtype=np.uint8), "RGBA")
    smooth = noise.resize((6, 5)).resize((67, 41), Image.Resampling.BICUBIC)
    text = PngImagePlugin.PngInfo()
    text.add_text("Software", "a drawing program")
    xmp = PngImagePlugin.PngInfo()
    xmp.add_itxt("XML:com.adobe.xmp", '<x:xmpmeta><rdf:Description tiff:Orientation="6"/></x:xmpmeta>')
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: Pillow turns the pixels upright
    by_libspng = {
        f"{mode} {kind}": _saved_png(picture.convert(mode))
        for mode in ("L", "LA", "RGB", "RGBA")
        for kind, picture in (("noise", noise), ("smooth", smooth))
    }
    by_libspng["RGBA with a text chunk"] = _saved_png(noise, pnginfo=text)
    by_libspng["RGB uncompressed"] = _saved_png(noise.convert("RGB"), compress_level=0)
    by_pillow = {
        "16-bit grey": _saved_png(smooth.convert("I;16")),
        "palette": _saved_png(smooth.convert("P")),
        "palette with a transparent colour": _saved_png(smooth.convert("P"), transparency=0),
        "RGB with a transparent colour": _saved_png(smooth.convert("RGB"), transparency=(0, 0, 0)),
        "1-bit": _saved_png(smooth.convert("1")),
        "EXIF orientation": _saved_png(noise, exif=exif),
        "XMP orientation": _saved_png(noise, pnginfo=xmp),
        "animation": _saved_png(noise, save_all=True, append_images=[smooth], default_image=False),
    }
    corrupt_crc = bytearray(by_libspng["RGB noise"])
    corrupt_crc[-16] ^= 0xFF  # the last IDAT chunk's CRC (before IEND's 12 bytes): only libspng checks it
    for name, data in by_libspng.items():
        assert imaging._decode_plain_png(data) is not None, name
    for name, data in by_pillow.items():
        assert imaging._decode_plain_png(data) is None, name
    cases = {**by_libspng, **by_pillow, "IDAT with a wrong CRC": bytes(corrupt_crc)}
    for keep_alpha in (True, False):
        ours = {name: imaging.open_image(data, 10**6, keep_alpha=keep_alpha) for name, data in cases.items()}
        with monkeypatch.context() as m:
            m.setattr(imaging, "_decode_plain_png", lambda data: None)
            pillows = {name: imaging.open_image(data, 10**6, keep_alpha=keep_alpha) for name, data in cases.items()}
        for name, got in ours.items():
            assert (got.mode, got.size) == (pillows[name].mode, pillows[name].size), name
            np.testing.assert_array_equal(np.asarray(got), np.asarray(pillows[name]), err_msg=name)
    assert ours["EXIF orientation"].size == (41, 67) and ours["XMP orientation"].size == (41, 67)  # turned upright
    with pytest.raises(imaging.ImageRejected, match="not a readable PNG"):
        imaging.open_image(by_libspng["RGB noise"][:-200], 10**6)  # truncated: rejected, as before


def test_kill_9_mid_build_then_rerun_completes_without_duplicates(tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    n = 240
    for i in range(n):
        (folder / f"{i:03d}.png").write_bytes(_png((i, 255 - i, (7 * i) % 256)))
    data = tmp_path / "data"
    args = ["--data-dir", str(data), "--images", str(folder), "--title", "Many"]
    env = {**ENV, "LATENTMAP_INGEST_BATCH_SIZE": "8"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "build", "--space", "tiny-random", "--quiet", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    db = data / "latentmap.sqlite3"
    deadline = time.time() + 240
    count = 0
    while time.time() < deadline and proc.poll() is None:
        if db.exists():
            with sqlite3.connect(db, timeout=5) as con:
                try:
                    count = con.execute("SELECT COUNT(*) FROM items").fetchone()[0]
                except sqlite3.OperationalError:
                    count = 0
            if count >= 16:
                break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 0 < count < n, "the build was not caught in the middle"
    with sqlite3.connect(db) as con:
        partial = con.execute("SELECT COUNT(*) FROM items").fetchone()[0]
    assert partial % 8 == 0  # whole batches only

    r = _cli(*args, env={"LATENTMAP_INGEST_BATCH_SIZE": "8"})
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["continued"] and out["count"] == n and out["present"] == partial and out["added"] == n - partial
    with sqlite3.connect(db) as con:
        labels = [r[0] for r in con.execute("SELECT label FROM items")]
        assert con.execute("SELECT COUNT(*) FROM maps").fetchone()[0] == 1
    assert sorted(labels) == sorted(f"{i:03d}.png" for i in range(n))
    assert len(os.listdir(data / "thumbnails")) == n  # no orphan thumbnails of the killed batch


@pytest.mark.slow  # starts a local Ray (~1-4 min on 2 busy cores)
def test_ray_pipeline_gives_the_same_items_and_vectors_as_the_local_one(tmp_path, capsys):
    """The same folder built with and without Ray (a local Ray with 2 CPUs), digits space."""
    from app.ingest import ray_pipeline
    from app.maps.demo import digit_pil_images
    from app.settings import Settings
    from app.spaces.registry import load_space

    pictures, labels = digit_pil_images()
    folder = tmp_path / "digits"
    for i in range(60):
        (folder / f"digit-{int(labels[i])}").mkdir(parents=True, exist_ok=True)
        pictures[i].save(folder / f"digit-{int(labels[i])}" / f"{i}.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    space = load_space(Settings(space="digits", device="cpu"))
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:  # the decode stage runs as tasks of its own: fused into the encoder actor (Ray Data does that when both
        # stages ask for the same resources), every picture would be decoded by that one actor, one at a time
        records = sources.folder_source(folder, Settings(data_dir=tmp_path / "plan")).records
        ray_pipeline._dataset(ray, records, Settings(space="digits"), frozenset(), space.image_preparer()).explain()
    finally:
        ray.shutdown()
    plan = capsys.readouterr().out.split("Physical Plan (Optimized)")[1]
    assert "TaskPoolMapOperator[MapBatches(decode_batch)]" in plan, plan
    assert "ActorPoolMapOperator[MapBatches(Encoder)]" in plan, plan
    built = _build_locally_and_on_ray(tmp_path, folder, space)  # the build starts (and stops) a Ray of its own
    assert built["local"].keys() == built["ray"].keys()
    for key, (vector, latent) in built["local"].items():
        other, other_latent = built["ray"][key]
        assert float(vector @ other / np.linalg.norm(vector) / np.linalg.norm(other)) >= 0.999, key
        if latent is not None:
            np.testing.assert_allclose(latent, other_latent, atol=1e-4)


def _build_locally_and_on_ray(tmp_path, folder, space) -> dict:
    from app.ingest import ray_pipeline
    from app.settings import Settings

    built = {}
    for name in ("local", "ray"):
        settings = Settings(
            data_dir=tmp_path / name,
            space="digits",
            warm_umap=False,
            place_refine_epochs=0,
            ingest_batch_size=16,
            ray_decode_batch_size=24,  # decode blocks across encoder batches and import transactions
            ray_num_cpus=2,
        )
        service = MapService(Store(settings.data_dir), space, settings, WorkQueue(1))
        source = sources.folder_source(folder, settings)
        if name == "local":
            result = local.build(service, source, "Digits", progress=False)
        else:
            result = ray_pipeline.build(service, source, "Digits", None, progress=False)
        assert (result.added, [s.name for s in result.skipped]) == (60, ["broken.png"])
        arrays = service.store.get_arrays(result.map_id)
        folders, _ = service.store.column_values(result.map_id, service.store.column(result.map_id, "folder"))
        built[name] = {
            (f, label): (v, lat) for f, label, v, lat in zip(folders, arrays.labels, arrays.vectors, arrays.latents)
        }
        service.close()
    return built


def test_a_build_names_its_skipped_files_by_reason_a_screenful_at_most(capsys):
    """650 unsupported SVGs in an icon theme: 20 named, then how many more; --list-skipped names every one.
    Other reasons keep their own names."""
    from app.cli import SKIPPED_NAMES_SHOWN, _print_skipped

    svg = "unsupported format .svg (PNG, JPEG, WebP and GIF are read)"
    skipped = [sources.Skip(f"icons/{i:03d}.svg", svg) for i in range(650)] + [sources.Skip("food/bad.jpg", "corrupt")]
    _print_skipped(skipped, SKIPPED_NAMES_SHOWN)
    lines = capsys.readouterr().err.splitlines()
    assert lines[:SKIPPED_NAMES_SHOWN] == [f"skipped icons/{i:03d}.svg: {svg}" for i in range(SKIPPED_NAMES_SHOWN)]
    assert lines[SKIPPED_NAMES_SHOWN:] == [
        f"skipped {650 - SKIPPED_NAMES_SHOWN} more: {svg} (--list-skipped names all)",
        "skipped food/bad.jpg: corrupt",
    ]
    _print_skipped(skipped, None)
    assert capsys.readouterr().err.splitlines() == [f"skipped {s.name}: {s.reason}" for s in skipped]

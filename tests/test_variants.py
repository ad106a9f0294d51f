"""Decoder variants: LoRAs, fine-tunes, upscalers (app/spaces/variants.py, app/api/variants.py, app/maps/compare.py).

Two parts. The mechanics (loading, strengths, caching, HTTP) run on a copy of `tiny-random` given random
variants here. The meaning runs on the committed `digits` variants (app/spaces/weights/digits/variants/),
trained by `python -m training.digits_variants`: the LoRA thickens strokes while keeping the digit,
the fine-tune keeps the base's map, the upscaler beats bicubic. Figures are printed (pytest -s) and asserted.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from app.main import create_app
from app.maps.service import Rejected
from app.settings import Settings
from app.spaces.base import DecodeRequest
from app.spaces.clip_decoder import ClipDecoderSpace
from app.spaces.loading import UnsafeWeightsError
from app.spaces.variants import ConvUpscaler, VariantError

DIGITS_DIR = Path(__file__).resolve().parents[1] / "app" / "spaces" / "weights" / "digits"


# ---------------------------------------------------------------------------------------------- tiny fixtures
def _random_lora(unet_dir: Path, out: Path, name: str = "style", seed: int = 0) -> Path:
    from diffusers import UNet2DConditionModel
    from peft import LoraConfig

    torch.manual_seed(seed)
    unet = UNet2DConditionModel.from_pretrained(unet_dir, use_safetensors=True)
    unet.add_adapter(
        LoraConfig(
            r=4,
            lora_alpha=4,
            init_lora_weights="gaussian",
            target_modules=["to_q", "to_k", "to_v", "to_out.0", "conv1", "conv2"],
        ),
        name,
    )
    with torch.no_grad():
        for n, p in unet.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)
    out.mkdir(parents=True, exist_ok=True)
    unet.save_lora_adapter(out, adapter_name=name, weight_name="lora.safetensors")
    return out / "lora.safetensors"


@pytest.fixture(scope="module")
def variant_space_dir(tiny_space_dir, tmp_path_factory) -> Path:
    """tiny-random plus a random LoRA, a perturbed fine-tune and a random RGB upscaler."""
    from diffusers import UNet2DConditionModel

    root = tmp_path_factory.mktemp("variant-space") / "tiny-random"
    shutil.copytree(tiny_space_dir, root)
    v = root / "variants"
    _random_lora(root / "decoder" / "unet", v / "style")
    (v / "style" / "variant.json").write_text(
        json.dumps(
            {
                "kind": "lora",
                "base": "tiny-random",
                "default_scale": 1.0,
                "licence": "test",
                "lineage": {"kind": "lora", "lora_of": "tiny-random"},
            }
        )
    )
    torch.manual_seed(1)
    unet = UNet2DConditionModel.from_pretrained(root / "decoder" / "unet", use_safetensors=True)
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    unet.save_pretrained(v / "tuned" / "unet", safe_serialization=True)
    (v / "tuned" / "variant.json").write_text(json.dumps({"kind": "finetune", "base": "tiny-random"}))
    up = ConvUpscaler(channels=3, scale=2, width=8, blocks=1)
    (v / "x2").mkdir()
    up.save(v / "x2")
    (v / "x2" / "variant.json").write_text(json.dumps({"kind": "upscaler", "base": "tiny-random", "config": up.config}))
    return root


@pytest.fixture(scope="module")
def vspace(variant_space_dir):
    return ClipDecoderSpace.from_pretrained(variant_space_dir, device="cpu")


def _req(space, seed=0, **kw) -> DecodeRequest:
    vec = np.random.default_rng(3).standard_normal(space.dim).astype(np.float32) * space.stats.image_norm / 8
    return DecodeRequest(vector=vec, seed=seed, **kw)


def _arr(image) -> np.ndarray:
    return np.asarray(image)


# ---------------------------------------------------------------------------------------------- mechanics
def test_variants_listed_with_lineage(vspace):
    rows = {v["name"]: v for v in vspace.variants()}
    assert set(rows) == {"style", "tuned", "x2"}
    assert rows["style"]["kind"] == "lora" and rows["style"]["rank"] == 4 and rows["style"]["default_scale"] == 1.0
    assert rows["style"]["lineage"]["lora_of"] == "tiny-random"
    assert rows["tuned"]["lineage"]["fine_tune_of"] == "tiny-random"
    assert rows["x2"]["scale"] == 2
    assert vspace.info["lineage"]["kind"] == "base"
    assert [v["name"] for v in vspace.info["variants"]] == ["style", "tuned", "x2"]


def test_base_decode_is_unchanged_by_loaded_variants(vspace, tiny_space):
    plain = tiny_space.decode([_req(tiny_space)])[0]
    assert np.array_equal(_arr(vspace.decode([_req(vspace)])[0]), _arr(plain))
    # ...also right after a LoRA decode (the adapter is switched off again)
    vspace.decode([_req(vspace, variant="style")])
    assert np.array_equal(_arr(vspace.decode([_req(vspace, variant="base")])[0]), _arr(plain))


def test_lora_strength_and_finetune_change_the_picture(vspace):
    base = _arr(vspace.decode([_req(vspace)])[0])
    full = _arr(vspace.decode([_req(vspace, variant="style")])[0])
    half = _arr(vspace.decode([_req(vspace, variant="style", lora_scale=0.5)])[0])
    zero = _arr(vspace.decode([_req(vspace, variant="style", lora_scale=0.0)])[0])
    tuned = _arr(vspace.decode([_req(vspace, variant="tuned")])[0])
    assert np.array_equal(zero, base)
    assert not np.array_equal(full, base) and not np.array_equal(half, full) and not np.array_equal(tuned, base)
    d = lambda a: np.abs(a.astype(int) - base.astype(int)).mean()  # noqa: E731
    assert d(half) < d(full)
    assert np.array_equal(_arr(vspace.decode([_req(vspace, variant="style")])[0]), full)  # deterministic


@pytest.mark.parametrize(
    "variant, scale",
    [
        ("nope", None),
        ("x2", None),
        ("base", 0.5),
        ("tuned", 0.5),
        ("style", 2.5),
        ("style", -1.0),
        ("style", float("nan")),
    ],
)
def test_undecodable_variants_are_refused(vspace, variant, scale):
    """Unknown names, the upscaler as a decoder, a strength for a decoder without one, out-of-range strengths."""
    with pytest.raises(ValueError):
        vspace.resolve_variant(variant, scale)


def test_resolve_variant_rules(vspace, tiny_space):
    assert vspace.resolve_variant(None, None) == (None, None)
    assert vspace.resolve_variant("base", None) == (None, None)
    assert vspace.resolve_variant("style", None) == ("style", 1.0)
    assert vspace.resolve_variant("style", 0.25) == ("style", 0.25)
    assert vspace.resolve_variant("tuned", None) == ("tuned", None)
    with pytest.raises(ValueError):
        tiny_space.resolve_variant("style", None)


def test_load_lora_from_local_file(tiny_space_dir, tmp_path):
    space = ClipDecoderSpace.from_pretrained(tiny_space_dir, device="cpu")
    f = _random_lora(tiny_space_dir / "decoder" / "unet", tmp_path / "l", seed=5)
    # diffusers pipelines' save_lora_weights prefix keys with "unet."; both layouts load.
    from safetensors.torch import load_file, save_file

    save_file({f"unet.{k}": v for k, v in load_file(str(f)).items()}, str(tmp_path / "prefixed.safetensors"))
    row = space.load_lora(tmp_path / "prefixed.safetensors", "mine", scale=0.7)
    assert row["kind"] == "lora" and row["default_scale"] == 0.7
    assert space.resolve_variant("mine", None) == ("mine", 0.7)
    assert [v["name"] for v in space.info["variants"]] == ["mine"]
    base = _arr(space.decode([_req(space)])[0])
    assert not np.array_equal(_arr(space.decode([_req(space, variant="mine")])[0]), base)
    with pytest.raises(VariantError):
        space.load_lora(tmp_path / "prefixed.safetensors", "mine")  # name taken
    with pytest.raises(VariantError):
        space.load_lora(tmp_path / "prefixed.safetensors", "base")  # reserved
    (tmp_path / "evil.bin").write_bytes(b"\x80\x04")
    with pytest.raises(VariantError):
        space.load_lora(tmp_path / "evil.bin", "evil")
    save_file({"foo.weight": torch.zeros(2)}, str(tmp_path / "notlora.safetensors"))
    with pytest.raises(VariantError):
        space.load_lora(tmp_path / "notlora.safetensors", "notlora")


def test_an_encoding_only_load_leaves_the_variants_out_and_encodes_the_same(variant_space_dir, tmp_path):
    """What a Ray encoder actor loads: the space directory's variants and the --lora files stay out (decoders
    only), the vectors and latents are the full space's."""
    from app.spaces.registry import load_space

    lora = _random_lora(variant_space_dir / "decoder" / "unet", tmp_path / "l", seed=7)
    settings = Settings(space=str(variant_space_dir), device="cpu", loras=f"mine={lora}")
    full = load_space(settings)
    assert {v["name"] for v in full.variants()} == {"style", "tuned", "x2", "mine"}
    encoder = load_space(settings, decoder_variants=False)
    assert encoder.variants() == []
    pictures = [Image.fromarray(np.random.default_rng(i).integers(0, 256, (40, 30, 3), np.uint8)) for i in range(3)]
    got, want = (s.encode_prepared([s.prepare_image(p) for p in pictures]) for s in (encoder, full))
    np.testing.assert_array_equal(got.vectors, want.vectors)
    np.testing.assert_array_equal(np.asarray(got.latents), np.asarray(want.latents))


def test_variant_folders_must_be_safetensors_only(variant_space_dir, tmp_path):
    bad = tmp_path / "space"
    shutil.copytree(variant_space_dir, bad)
    (bad / "variants" / "style" / "extra.pt").write_bytes(b"\x80\x04")
    with pytest.raises(UnsafeWeightsError):
        ClipDecoderSpace.from_pretrained(bad, device="cpu")


def test_upscale_space_method(vspace, tiny_space):
    image = vspace.decode([_req(vspace)])[0]
    big = vspace.upscale(image)
    assert big.size == (image.width * 2, image.height * 2) and big.mode == "RGB"
    with pytest.raises(ValueError):
        tiny_space.upscale(image)


# ---------------------------------------------------------------------------------------------- HTTP
def _start(space, data_dir):
    return TestClient(create_app(Settings(data_dir=data_dir, space="tiny-random", warm_umap=False), space=space))


@pytest.fixture
def vclient(vspace, tmp_path):
    with _start(vspace, tmp_path / "data") as c:
        yield c


@pytest.fixture
def vmap(vclient):
    body = vclient.post("/api/maps", json={"title": "variants"}).json()
    headers = {"X-Edit-Key": body["edit_key"]}
    r = vclient.post(f"/api/maps/{body['id']}/prompts", json={"prompts": ["a cat", "a dog", "a car"]}, headers=headers)
    assert r.status_code == 201
    return body["id"]


def test_api_lists_variants_and_lineage(vclient):
    body = vclient.get("/api/variants").json()
    assert body["space"] == "tiny-random" and body["lineage"]["kind"] == "base"
    assert {v["name"]: v["kind"] for v in body["variants"]} == {"style": "lora", "tuned": "finetune", "x2": "upscaler"}
    row = next(s for s in vclient.get("/api/spaces").json() if s["loaded"])
    assert {v["name"] for v in row["info"]["variants"]} == {"style", "tuned", "x2"}
    assert row["info"]["lineage"]["kind"] == "base"


def test_api_compare_point(vclient, vmap):
    body = {
        "x": 0.1,
        "y": 0.2,
        "seed": 3,
        "variants": ["base", "style", {"variant": "style", "lora_scale": 0.5}, "tuned"],
    }
    r = vclient.post(f"/api/maps/{vmap}/compare", json=body)
    assert r.status_code == 200, r.text
    images = r.json()["images"]
    assert [(i["variant"], i["lora_scale"]) for i in images] == [
        ("base", None),
        ("style", 1.0),
        ("style", 0.5),
        ("tuned", None),
    ]
    pngs = [vclient.get(i["url"]).content for i in images]
    assert len(set(pngs)) == 4
    # the base image is the plain /decode of the same point (same cache key, same bytes)
    plain = vclient.post(f"/api/maps/{vmap}/decode", json={"x": 0.1, "y": 0.2, "seed": 3})
    assert plain.headers["X-Decode-Key"] == images[0]["key"] and plain.content == pngs[0]
    again = vclient.post(f"/api/maps/{vmap}/compare", json=body).json()["images"]
    assert all(i["cached"] for i in again)
    # "style" and "style@1.0" are one decode
    r = vclient.post(
        f"/api/maps/{vmap}/compare",
        json={"x": 0.1, "y": 0.2, "seed": 3, "variants": [{"variant": "style", "lora_scale": 1.0}]},
    )
    assert r.json()["images"][0]["key"] == images[1]["key"]


@pytest.mark.parametrize(
    "variants",
    [
        [],
        ["nope"],
        ["x2"],
        [{"variant": "style", "lora_scale": 9}],
        [{"variant": "base", "lora_scale": 0.5}],
        ["base"] * 7,
    ],
)
def test_api_compare_rejects(vclient, vmap, variants):
    r = vclient.post(f"/api/maps/{vmap}/compare", json={"x": 0, "y": 0, "variants": variants})
    assert r.status_code == 422 and "detail" in r.json()


def test_api_compare_path(vclient, vmap):
    pts = [[-0.5, 0.0], [0.5, 0.3]]
    r = vclient.post(
        f"/api/maps/{vmap}/compare/path", json={"points": pts, "steps": 3, "seed": 1, "variants": ["base", "style"]}
    )
    assert r.status_code == 200, r.text
    paths = r.json()["paths"]
    assert [p["variant"] for p in paths] == ["base", "style"] and all(len(p["frames"]) == 3 for p in paths)
    # base frames are the frames of POST /path (shared cache keys)
    plain = vclient.post(f"/api/maps/{vmap}/path", json={"points": pts, "steps": 3, "seed": 1}).json()
    assert [f["url"] for f in plain["frames"]] == [f["url"] for f in paths[0]["frames"]]
    assert vclient.get(paths[1]["frames"][1]["url"]).content != vclient.get(paths[0]["frames"][1]["url"]).content
    r = vclient.post(f"/api/maps/{vmap}/compare/path", json={"points": pts, "steps": 99, "variants": ["base"]})
    assert r.status_code == 422


def test_api_upscale(vclient, vmap):
    key = vclient.post(f"/api/maps/{vmap}/decode", json={"x": 0, "y": 0}).headers["X-Decode-Key"]
    r = vclient.post(f"/api/decodes/{key}/upscale")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["upscaler"] == "x2" and body["size"] == [2 * s for s in body["source_size"]] and not body["cached"]
    big = Image.open(io.BytesIO(vclient.get(body["url"]).content))
    assert big.size == tuple(body["size"])
    assert vclient.post(f"/api/decodes/{key}/upscale", json={"upscaler": "x2"}).json()["cached"]
    assert vclient.post(f"/api/decodes/{key}/upscale", json={"upscaler": "nope"}).status_code == 422
    assert vclient.post(f"/api/decodes/{'0' * 64}/upscale").status_code == 422
    assert vclient.post("/api/decodes/not-a-key/upscale").status_code == 404


def test_api_upscale_without_upscaler(tiny_space, tmp_path):
    with _start(tiny_space, tmp_path / "plain") as client:
        body = client.post("/api/maps", json={"title": "plain"}).json()
        client.post(
            f"/api/maps/{body['id']}/prompts", json={"prompts": ["a", "b"]}, headers={"X-Edit-Key": body["edit_key"]}
        )
        key = client.post(f"/api/maps/{body['id']}/decode", json={"x": 0, "y": 0}).headers["X-Decode-Key"]
        r = client.post(f"/api/decodes/{key}/upscale")
        assert r.status_code == 422 and "no upscaler" in r.json()["detail"]
        assert client.get("/api/variants").json()["variants"] == []
        r = client.post(f"/api/maps/{body['id']}/compare", json={"x": 0, "y": 0, "variants": ["base", "style"]})
        assert r.status_code == 422 and "has no variants" in r.json()["detail"]


def test_decode_key_unchanged_for_the_base_decoder(vclient, vmap):
    """Asking for the base decoder by name is the same decode (and key) as asking for none; a variant is not."""
    service = vclient.app.state.service
    record = service.store.get_map(vmap)
    base = service.resolve_variant("base", None)
    assert service.decode_key(record, 0.5, 0.25, 7, *base) == service.decode_key(record, 0.5, 0.25, 7)
    assert service.decode_key(record, 0.5, 0.25, 7, "style", 1.0) != service.decode_key(record, 0.5, 0.25, 7)
    with pytest.raises(Rejected):
        service.decode_at(vmap, 0.5, 0.25, 7, variant="nope")


def test_api_decode_accepts_variant(vclient, vmap):
    base = vclient.post(f"/api/maps/{vmap}/decode", json={"x": 0, "y": 0})
    lora = vclient.post(f"/api/maps/{vmap}/decode", json={"x": 0, "y": 0, "variant": "style", "lora_scale": 0.5})
    assert lora.status_code == 200 and lora.content != base.content
    assert vclient.post(f"/api/maps/{vmap}/decode", json={"x": 0, "y": 0, "variant": "nope"}).status_code == 422


def test_api_align_two_spaces(vclient):
    from app.maps.store import NewItem

    prompts = [f"thing {i}" for i in range(12)]
    maps = []
    for title in ("a", "b"):
        body = vclient.post("/api/maps", json={"title": title}).json()
        vclient.post(
            f"/api/maps/{body['id']}/prompts", json={"prompts": prompts}, headers={"X-Edit-Key": body["edit_key"]}
        )
        maps.append(body["id"])
    r = vclient.get(f"/api/maps/{maps[0]}/align/{maps[1]}", params={"k": 3})
    assert r.status_code == 200, r.text
    same = r.json()
    assert same["matched"] == 12 and same["mean_agreement"] == 1.0 and same["disparity"] < 1e-9

    # The same items in "another space": vectors rotated (cosines kept) in another dimension, map turned,
    # scaled and shifted. Procrustes undoes the 2D change; the neighbourhoods agree everywhere.
    store = vclient.app.state.service.store
    arrays = store.get_arrays(maps[0])
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.standard_normal((48, 48)))
    rotated = (np.pad(arrays.vectors, ((0, 0), (0, 48 - arrays.vectors.shape[1]))) @ q).astype(np.float32)
    angle = 0.7
    turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    other, _ = store.create_map("other space", "another-space")
    store.add_items(
        other.id,
        [NewItem("text", lab, v, v) for lab, v in zip(arrays.labels, rotated)],
        (arrays.xy @ turn.T * 3 + 5).astype(np.float32),
    )
    body = vclient.get(f"/api/maps/{maps[0]}/align/{other.id}", params={"k": 3}).json()
    assert body["mean_agreement"] == 1.0 and body["disparity"] < 1e-6 and abs(body["scale"] - 1 / 3) < 1e-4
    for item in body["items"]:
        assert np.allclose(item["a"], item["b_aligned"], atol=1e-3)
    # Noisy vectors: some neighbourhoods disagree, per item.
    noisy, _ = store.create_map("noisy", "another-space")
    store.add_items(
        noisy.id,
        [
            NewItem("text", lab, v, v)
            for lab, v in zip(arrays.labels, rng.standard_normal(rotated.shape).astype(np.float32))
        ],
        arrays.xy,
    )
    body = vclient.get(f"/api/maps/{maps[0]}/align/{noisy.id}", params={"k": 3}).json()
    assert body["mean_agreement"] < 1.0 and len({i["agreement"] for i in body["items"]}) > 1

    assert vclient.get(f"/api/maps/{maps[0]}/align/{maps[1]}", params={"k": 0}).status_code == 422
    assert vclient.get(f"/api/maps/{maps[0]}/align/{maps[1]}", params={"k": 12}).status_code == 422
    assert vclient.get(f"/api/maps/{maps[0]}/align/nosuchmap000").status_code == 404


# ---------------------------------------------------------------------------------------------- digits: meaning


@pytest.fixture(scope="module")
def one_thread():
    # On a shared 2-core machine one thread decodes these tiny models several times faster than two.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def digits(one_thread):
    from app.spaces.digits_data import digit_images, mean_image_vectors
    from training.digits_variants import classifier

    space = ClipDecoderSpace.from_pretrained(DIGITS_DIR, device="cpu")
    images, labels, train_idx, test_idx = digit_images()
    clf = classifier(images, labels, train_idx)
    vectors = space.encode_images([images[i] for i in test_idx]).vectors
    return {
        "space": space,
        "clf": clf,
        "means": mean_image_vectors(vectors, labels[test_idx]),
        "images": images,
        "labels": labels,
        "train_idx": train_idx,
        "test_idx": test_idx,
    }


SEEDS = (0, 1)


@pytest.fixture(scope="module")
def digit_decodes(digits):
    """The 10 digits' mean test embeddings x 2 seeds through base, thick, thick@0.5 and italic."""
    space, out = digits["space"], {}
    for name, scale in [("base", None), ("thick", None), ("thick", 0.5), ("italic", None)]:
        t = time.perf_counter()
        ims = [
            im
            for s in SEEDS
            for im in space.decode(
                [DecodeRequest(vector=v, seed=s, variant=name, lora_scale=scale) for v in digits["means"]]
            )
        ]
        out[name if scale is None else f"{name}@{scale}"] = (ims, (time.perf_counter() - t) / len(ims))
    return out


def test_digits_variants_lineage(digits):
    rows = {v["name"]: v for v in digits["space"].variants()}
    assert {rows[n]["kind"] for n in ("thick", "italic", "x4")} == {"lora", "finetune", "upscaler"}
    assert rows["thick"]["lineage"]["lora_of"] == "digits" and rows["thick"]["rank"] <= 8
    assert rows["italic"]["lineage"]["fine_tune_of"] == "digits"
    assert all("load_digits" in rows[n]["licence"] for n in rows)
    total = sum(f.stat().st_size for f in (DIGITS_DIR / "variants").rglob("*") if f.is_file())
    assert total < 8_000_000, f"variants weigh {total} bytes"


def test_digits_lora_thickens_strokes_and_keeps_the_digit(digits, digit_decodes):
    from training.digits_variants import ink_fraction, predict

    targets = np.tile(np.arange(10), len(SEEDS))
    base, thick, half = (digit_decodes[k][0] for k in ("base", "thick", "thick@0.5"))
    ink = {k: ink_fraction(digit_decodes[k][0]) for k in ("base", "thick@0.5", "thick")}
    acc = float((predict(digits["clf"], thick) == targets).mean())
    print(
        f"\nink fraction base {ink['base']:.3f}, thick@0.5 {ink['thick@0.5']:.3f}, thick {ink['thick']:.3f}; "
        f"thick classified as intended {acc:.0%}; s/image base {digit_decodes['base'][1]:.3f}, "
        f"thick {digit_decodes['thick'][1]:.3f}"
    )
    assert ink["thick"] >= 1.2 * ink["base"], ink
    assert ink["base"] < ink["thick@0.5"] < ink["thick"], ink
    assert acc >= 0.8


def test_digits_finetune_inherits_the_map(digits, digit_decodes):
    from training.digits_variants import predict, slant

    base, italic = digit_decodes["base"][0], digit_decodes["italic"][0]
    same = float((predict(digits["clf"], italic) == predict(digits["clf"], base)).mean())
    s_base, s_italic = slant(base), slant(italic)
    print(f"\nfine-tune gives the base's digit for {same:.0%}; slant base {s_base:.3f}, italic {s_italic:.3f}")
    assert same >= 0.8
    assert s_italic > s_base + 0.08


def test_digits_upscaler_beats_bicubic(digits):
    from app.spaces.digits_data import digit_images
    from training.digits_variants import UPSCALE, _to_tensor, psnr, upscaler_data

    space = digits["space"]
    test_idx = digits["test_idx"][:200]
    x16 = _to_tensor([digits["images"][i] for i in test_idx])
    images64 = digit_images(16 * UPSCALE)[0]
    x64 = _to_tensor([images64[i] for i in test_idx])
    low, high = upscaler_data(space.pipeline.vae, x16, x64, 0, None)
    low_pil = [Image.fromarray(((a[0].numpy() + 1) * 127.5).round().astype(np.uint8), "L") for a in low]
    t = time.perf_counter()
    ups = [space.upscale(im) for im in low_pil]
    dt = (time.perf_counter() - t) / len(ups)
    bic = [im.resize((64, 64), Image.Resampling.BICUBIC) for im in low_pil]
    target = (high[:, 0].numpy() + 1) / 2
    arr = lambda ims: np.stack([np.asarray(im, dtype=np.float32) / 255 for im in ims])  # noqa: E731
    p_up, p_bic = psnr(arr(ups), target), psnr(arr(bic), target)
    print(
        f"\nupscaler PSNR {p_up:.2f} dB vs bicubic {p_bic:.2f} dB on {len(ups)} held-out digits; "
        f"{dt * 1000:.1f} ms/image"
    )
    assert ups[0].size == (64, 64) and ups[0].mode == "L"
    assert p_up > p_bic + 3.0


def _files(data_dir: Path) -> set[str]:
    """Every file under the data dir but SQLite's own journals (they come and go with any write)."""
    return {
        str(p.relative_to(data_dir))
        for p in data_dir.rglob("*")
        if p.is_file() and not p.name.endswith(("-wal", "-shm", "-journal"))
    }


def test_deleting_a_map_leaves_no_file_of_it(vspace, tmp_path):
    """Everything a map makes on disk (thumbnails, decodes, variants' decodes, upscales, path and terrain
    decodes, tile atlases) goes with `DELETE /api/maps/{id}`; another map's files stay."""
    data_dir = tmp_path / "data"
    with TestClient(
        create_app(
            Settings(data_dir=data_dir, space="tiny-random", warm_umap=False, terrain_cells=2, terrain_cell_px=16),
            space=vspace,
        )
    ) as client:

        def filled_map(title: str) -> tuple[str, dict]:
            made = client.post("/api/maps", json={"title": title}).json()
            key = {"X-Edit-Key": made["edit_key"]}
            client.post(f"/api/maps/{made['id']}/prompts", json={"prompts": ["a cat", "a dog", "a car"]}, headers=key)
            buf = io.BytesIO()
            Image.new("RGB", (40, 40), (200, 40, 40)).save(buf, "PNG")
            r = client.post(f"/api/maps/{made['id']}/images", files=[("files", ("r.png", buf.getvalue()))], headers=key)
            assert r.status_code == 201, r.text
            return made["id"], key

        def use(map_id: str) -> None:
            key = client.post(f"/api/maps/{map_id}/decode", json={"x": 0.1, "y": 0}).headers["X-Decode-Key"]
            assert client.post(f"/api/decodes/{key}/upscale").status_code == 200
            compared = client.post(f"/api/maps/{map_id}/compare", json={"x": 0.2, "y": 0, "variants": ["style"]})
            assert client.post(f"/api/decodes/{compared.json()['images'][0]['key']}/upscale").status_code == 200
            pts, image = [[-0.5, 0.0], [0.5, 0.3]], client.get(f"/api/maps/{map_id}/points").json()["points"][-1]
            path = client.post(f"/api/maps/{map_id}/path", json={"points": pts, "steps": 2}).json()
            assert client.get(f"/api/paths/{path['key']}.gif").status_code == 200
            body = {"points": pts, "steps": 2, "variants": ["base", "style"]}
            assert client.post(f"/api/maps/{map_id}/compare/path", json=body).status_code == 200
            assert client.post(f"/api/maps/{map_id}/items/{image['id']}/vary", json={"seed": 3}).status_code == 200
            assert client.get(f"/api/maps/{map_id}/terrain/0/0/0.png?seed=0").status_code == 200
            v = client.get(f"/api/maps/{map_id}/tiles").json()["version"]
            assert client.get(f"/api/maps/{map_id}/tiles/0/0/0.webp?v={v}").status_code == 200

        empty = _files(data_dir)
        kept, _ = filled_map("kept")
        use(kept)
        kept_files = _files(data_dir) - empty
        gone, key = filled_map("deleted")
        use(gone)
        made = _files(data_dir) - empty - kept_files
        assert len(made) >= 12, made  # its thumbnails and decodes are files of its own
        assert client.delete(f"/api/maps/{gone}", headers=key).status_code == 204
        assert _files(data_dir) - empty == kept_files
        assert client.get(f"/api/maps/{kept}/points").status_code == 200

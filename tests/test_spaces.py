"""The space loading code: build tiny models from config, save, load back through the real loader."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from app.settings import Settings
from app.spaces import registry, tiny_random
from app.spaces.base import DecodeRequest
from app.spaces.clip_decoder import ClipDecoderSpace
from app.spaces.loading import UnsafeWeightsError


def test_saved_space_has_the_hub_layout_and_only_safetensors(tiny_space_dir):
    files = {p.relative_to(tiny_space_dir).as_posix() for p in tiny_space_dir.rglob("*") if p.is_file()}
    for expected in (
        "space.json",
        "stats.safetensors",
        "clip/open_clip_config.json",
        "clip/open_clip_model.safetensors",
        "decoder/model_index.json",
        "decoder/unet/diffusion_pytorch_model.safetensors",
        "decoder/vae/config.json",
        "decoder/scheduler/scheduler_config.json",
    ):
        assert expected in files
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pth", ".ckpt"))]
    index = json.loads((tiny_space_dir / "decoder" / "model_index.json").read_text())
    assert index["_class_name"] == "ClipDecoderPipeline"


def test_build_is_deterministic_and_load_round_trips(tiny_space_dir, tiny_space, tmp_path):
    rebuilt = ClipDecoderSpace.from_pretrained(tiny_random.build(tmp_path / "again"), device="cpu")
    texts = ["a photo of a cat", "the number seven"]
    assert np.array_equal(rebuilt.encode_text(texts), tiny_space.encode_text(texts))
    image = Image.new("RGB", (48, 40), (20, 120, 220))
    a, b = rebuilt.encode_images([image]), tiny_space.encode_images([image])
    assert np.array_equal(a.vectors, b.vectors) and np.array_equal(a.latents, b.latents)


def test_encode_shapes(tiny_space):
    vectors = tiny_space.encode_text(["one", "two", "three"])
    assert vectors.shape == (3, tiny_space.dim) and vectors.dtype == np.float32
    encoded = tiny_space.encode_images([Image.new("RGB", (64, 64)), Image.new("L", (10, 30))])
    assert encoded.vectors.shape == (2, tiny_space.dim)
    assert encoded.latents.shape == (2, 4, 16, 16)


def test_one_resize_for_both_model_inputs_gives_the_same_tensors(tiny_space):
    """Square pictures are resized once for CLIP and the VAE (their sizes and colours agree in this space):
    exactly the tensors of resizing for each, on photos, flat art and transparent pictures alike."""
    import functools

    from sklearn.datasets import load_sample_images

    fast = tiny_space.image_preparer()
    assert fast.args[-1] is True  # the tiny space's transform starts with a bicubic resize to the VAE's size
    each = functools.partial(fast.func, *fast.args[:-1], False)
    photos = [Image.fromarray(a) for a in load_sample_images().images]
    pictures = [p.crop((0, 0, 300, 300)) for p in photos] + photos  # square (one resize) and not
    pictures += [Image.new("RGBA", (40, 40), (0, 0, 0, 0)), Image.new("L", (64, 64), 90)]
    for picture in pictures:
        a, b = fast(picture), each(picture)
        assert a.clip.shape == b.clip.shape and a.vae.shape == b.vae.shape
        assert bool((a.clip == b.clip).all()) and bool((a.vae == b.vae).all()), picture.size


def test_decode_deterministic_per_seed(tiny_space):
    v = tiny_space.encode_images([Image.new("RGB", (32, 32), (250, 0, 0))]).vectors[0]
    a, b, c = tiny_space.decode([DecodeRequest(v, seed=1), DecodeRequest(v, seed=1), DecodeRequest(v, seed=2)])
    assert a.size == (32, 32)
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(c))


def test_decode_from_a_latent_starts_from_it(tiny_space):
    enc = tiny_space.encode_images([Image.new("RGB", (32, 32), (250, 0, 0))])
    (plain,) = tiny_space.decode([DecodeRequest(enc.vectors[0], seed=1)])
    (varied,) = tiny_space.decode([DecodeRequest(enc.vectors[0], seed=1, latent=enc.latents[0], strength=0.5)])
    assert not np.array_equal(np.asarray(plain), np.asarray(varied))


def test_decode_rejects_wrong_dimension(tiny_space):
    with pytest.raises(ValueError, match="shape"):
        tiny_space.decode([DecodeRequest(np.zeros(tiny_space.dim + 1, np.float32), seed=0)])


def test_pickle_weights_are_refused(tiny_space_dir, tmp_path):
    copy = shutil.copytree(tiny_space_dir, tmp_path / "with-pickle")
    (copy / "decoder" / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(UnsafeWeightsError, match="safetensors only"):
        ClipDecoderSpace.from_pretrained(copy, device="cpu")


def test_missing_space_dir_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="space.json"):
        ClipDecoderSpace.from_pretrained(tmp_path, device="cpu")


def test_modality_gap_handling(tiny_space):
    text = tiny_space.encode_text(["hello", "world"])
    image_side = tiny_space.text_to_image_side(text)
    assert np.allclose(np.linalg.norm(image_side, axis=1), tiny_space.stats.image_norm, rtol=1e-4)
    centred = tiny_space.map_vectors(text, ["text", "text"])
    assert np.allclose(np.linalg.norm(centred, axis=1), 1.0, atol=1e-5)


def test_registry_loads_by_name_and_by_directory(tiny_space_dir, tmp_path):
    by_dir = registry.load_space(Settings(data_dir=tmp_path, space=str(tiny_space_dir)))
    assert by_dir.name == "tiny-random"
    with pytest.raises(ValueError, match="unknown space"):
        registry.load_space(Settings(data_dir=tmp_path, space="no-such-space"))

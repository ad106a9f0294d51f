"""The real ViT-H spaces (unclip-h, turbo-h) without a hub or a GPU.

Tiny random-weight versions of the exact classes (open_clip, StableUnCLIPImg2ImgPipeline, StableDiffusionPipeline,
IP-Adapter, LCM-LoRA, AutoencoderKL, AutoencoderTiny) are written to temp folders in the hub's layout and loaded
back through the real loader (`registry.load_space` → `hub.resolve` → env overrides to local folders).
"""

import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from app import cli
from app.main import create_app
from app.settings import REPO_ROOT, Settings
from app.spaces import hub, registry, turbo, unclip
from app.spaces.base import DecodeRequest
from app.spaces.loading import UnsafeWeightsError
from app.spaces.vith import torch_dtype
from tests.helpers import TINY_ARCH as ARCH
from tests.helpers import TINY_SIZE as SIZE
from tests.helpers import TINY_SPACE_CONFIG as TEST_CONFIG
from tests.helpers import real_space_env


def _load(name: str, paths: dict, tmp: Path):
    """Load `name` through the registry with every component overridden to a local folder."""
    config_file = tmp / f"{name}-config.json"
    config_file.write_text(json.dumps(TEST_CONFIG))
    with pytest.MonkeyPatch.context() as mp:
        for k, v in real_space_env(name, paths, config_file).items():
            mp.setenv(k, v)
        settings = Settings(data_dir=tmp / "data", space=name, device="cpu")
        ok, why = registry.SPACES[name].available(settings)
        assert ok, why
        return registry.load_space(settings)


@pytest.fixture(scope="session")
def unclip_paths(tmp_path_factory):
    return unclip.build_random(tmp_path_factory.mktemp("unclip-h"), ARCH)


@pytest.fixture(scope="session")
def turbo_paths(tmp_path_factory):
    return turbo.build_random(tmp_path_factory.mktemp("turbo-h"), ARCH)


@pytest.fixture(scope="session")
def unclip_space(unclip_paths, tmp_path_factory):
    return _load("unclip-h", unclip_paths, tmp_path_factory.mktemp("unclip-load"))


@pytest.fixture(scope="session")
def turbo_space(turbo_paths, tmp_path_factory):
    return _load("turbo-h", turbo_paths, tmp_path_factory.mktemp("turbo-load"))


@pytest.fixture(params=["unclip-h", "turbo-h"])
def space(request):
    return request.getfixturevalue("unclip_space" if request.param == "unclip-h" else "turbo_space")


def _img(seed: int, size=(48, 40)) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def _bytes(im: Image.Image) -> bytes:
    return im.tobytes()


# ---------------------------------------------------------------------------------------------- the spaces
def test_shapes_dtype_and_info(space):
    assert space.dim == ARCH["clip"]["model_cfg"]["embed_dim"]
    assert space.device == "cpu" and space.dtype == torch.float32  # fp32 on CPU
    text = space.encode_text(["a cat", "a dog"])
    assert text.shape == (2, space.dim) and text.dtype == np.float32
    enc = space.encode_images([_img(0), _img(1, (30, 70))])
    assert enc.vectors.shape == (2, space.dim)
    assert enc.latents.shape == (2, 4, SIZE // 8, SIZE // 8) and enc.latents.dtype == np.float32
    assert space.info["provenance"]["clip"]  # where the weights came from is reported
    assert space.stats.text_mean.shape == (space.dim,) and space.stats.image_norm > 0


def test_fp16_on_cuda_fp32_on_cpu():
    assert torch_dtype("cuda") == torch.float16 and torch_dtype("cuda:1") == torch.float16
    assert torch_dtype("cpu") == torch.float32


def test_decode_deterministic_per_seed(space):
    v = space.encode_images([_img(2)]).vectors[0]
    a, b, c = space.decode(
        [DecodeRequest(vector=v, seed=3), DecodeRequest(vector=v, seed=3), DecodeRequest(vector=v, seed=4)]
    )
    assert a.size == (SIZE, SIZE) and a.mode == "RGB"
    assert _bytes(a) == _bytes(b)
    assert _bytes(a) != _bytes(c)
    with pytest.raises(ValueError):
        space.decode([DecodeRequest(vector=np.zeros(space.dim + 1, np.float32), seed=0)])


def test_encode_prompts_generates_images(space):
    out = space.encode_prompts(["a red house", "a blue car"])
    assert out.vectors.shape == out.decode_vectors.shape == (2, space.dim)
    assert len(out.images) == 2 and all(im.size == (SIZE, SIZE) for im in out.images)
    assert out.latents.shape == (2, 4, SIZE // 8, SIZE // 8)
    # decode_vectors are the generated images' CLIP image embeddings, not the text vectors
    np.testing.assert_allclose(out.decode_vectors, space.clip.encode_images(out.images), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out.vectors, space.encode_text(["a red house", "a blue car"]), rtol=1e-4, atol=1e-5)


def test_latent_start_and_preview(space):
    enc = space.encode_images([_img(5)])
    v, lat = enc.vectors[0], enc.latents[0]
    full = space.decode([DecodeRequest(vector=v, seed=1)])[0]
    sdedit = space.decode([DecodeRequest(vector=v, seed=1, latent=lat, strength=0.5)])[0]
    preview = space.decode([DecodeRequest(vector=v, seed=1, preview=True)])[0]
    assert sdedit.size == preview.size == (SIZE, SIZE)
    assert _bytes(sdedit) != _bytes(full)
    assert _bytes(preview) != _bytes(full)
    with pytest.raises(ValueError):
        space.decode([DecodeRequest(vector=v, seed=1, latent=np.zeros((4, 3, 3), np.float32), strength=0.5)])
    # Less noise than one step's worth (2 steps x 0.2; the 1-step preview x 0.8): still one denoising step.
    # (Found by the real-size CPU run of bench/gpu_spaces.py: turbo-h's img2img ran zero steps and crashed.)
    for preview_flag, strength in ((False, 0.2), (True, 0.8), (False, 0.0)):
        low = space.decode([DecodeRequest(vector=v, seed=1, latent=lat, strength=strength, preview=preview_flag)])[0]
        assert low.size == (SIZE, SIZE)


def test_unclip_gets_unnormalised_embeds_and_zero_negative(unclip_space, monkeypatch):
    seen = {}
    pipe = unclip_space.pipe
    original = pipe.noise_image_embeddings

    def spy(image_embeds, noise_level, **kw):
        seen["embeds"], seen["noise_level"] = image_embeds.clone(), noise_level
        return original(image_embeds, noise_level, **kw)

    original_unet = pipe.unet.forward

    def unet_spy(*args, **kw):
        seen.setdefault("class_labels", kw["class_labels"].clone())
        return original_unet(*args, **kw)

    monkeypatch.setattr(pipe, "noise_image_embeddings", spy)
    monkeypatch.setattr(pipe.unet, "forward", unet_spy)
    v = unclip_space.encode_images([_img(7)]).vectors[0] * 3.0  # clearly not unit length
    unclip_space.decode([DecodeRequest(vector=v, seed=0)])
    np.testing.assert_allclose(seen["embeds"][0].numpy(), v, rtol=1e-6)
    assert abs(float(np.linalg.norm(seen["embeds"][0].numpy())) - float(np.linalg.norm(v))) < 1e-3
    assert seen["noise_level"] == 0
    labels = seen["class_labels"]  # guidance 10 → [negative, positive]; the negative is zeros
    assert labels.shape[0] == 2 and torch.count_nonzero(labels[0]) == 0 and torch.count_nonzero(labels[1]) > 0


def test_unclip_preview_uses_taesd(unclip_space, monkeypatch):
    calls = []
    original = unclip_space.taesd.decode
    monkeypatch.setattr(unclip_space.taesd, "decode", lambda *a, **k: calls.append(1) or original(*a, **k))
    v = unclip_space.encode_text(["x"])[0]
    unclip_space.decode([DecodeRequest(vector=v, seed=0)])
    assert calls == []
    unclip_space.decode([DecodeRequest(vector=v, seed=0, preview=True)])
    assert calls == [1]


def test_turbo_ip_adapter_embeds_layout(turbo_space, monkeypatch):
    seen = []
    original = turbo_space.pipe.prepare_ip_adapter_image_embeds

    def spy(ip_adapter_image, ip_adapter_image_embeds, *args, **kw):
        seen.append([e.clone() for e in ip_adapter_image_embeds])
        return original(ip_adapter_image, ip_adapter_image_embeds, *args, **kw)

    monkeypatch.setattr(turbo_space.pipe, "prepare_ip_adapter_image_embeds", spy)
    v = turbo_space.encode_images([_img(8)]).vectors[0] * 2.5
    turbo_space.decode([DecodeRequest(vector=v, seed=0)])
    (embeds,) = seen[0]  # one adapter
    assert embeds.shape == (1, 1, turbo_space.dim)  # guidance 1: no negative half
    np.testing.assert_allclose(embeds[0, 0].numpy(), v, rtol=1e-6)  # raw, not normalised
    with_cfg = turbo_space._ip_embeds(v, guidance=2.0)[0]
    assert with_cfg.shape == (2, 1, turbo_space.dim) and torch.count_nonzero(with_cfg[0]) == 0


def test_turbo_lcm_lora_is_fused_and_scheduler_is_lcm(turbo_space, turbo_paths):
    from diffusers import LCMScheduler, UNet2DConditionModel

    assert isinstance(turbo_space.pipe.scheduler, LCMScheduler)
    raw = UNet2DConditionModel.from_pretrained(turbo_paths["sd15"] / "unet", use_safetensors=True)
    name = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight"
    fused = dict(turbo_space.pipe.unet.named_parameters())[name]
    assert fused.shape == dict(raw.named_parameters())[name].shape
    assert not torch.allclose(fused, dict(raw.named_parameters())[name])
    assert type(turbo_space.pipe.vae).__name__ == "AutoencoderTiny"
    assert not any("lora" in n for n, _ in turbo_space.pipe.unet.named_parameters())


def test_stats_cached_on_second_load(unclip_space, unclip_paths, tmp_path):
    cache = Path(unclip_space.info["stats"]["file"])
    assert cache.is_file() and cache.suffix == ".safetensors"
    again = unclip.UnclipSpace.from_paths(
        unclip_paths,
        "cpu",
        cache_dir=cache.parent,
        config={**TEST_CONFIG, "name": "unclip-h"},
        n_reference=TEST_CONFIG["reference_prompts"],
    )
    assert again.info["stats"]["source"] == "cache"
    np.testing.assert_allclose(again.stats.image_mean, unclip_space.stats.image_mean)
    assert again.clip is unclip_space.clip  # one ViT-H per process and device


def test_map_service_with_turbo(turbo_space, tmp_path, monkeypatch):
    """Prompts appear at once; their generated images (thumbnail, decode vector, latent) follow in the background,
    exactly what the synchronous path would have stored."""
    import threading

    from app.maps.prompt_images import PromptImageWorker

    release = threading.Event()  # the images wait until the test has decoded from the provisional vectors
    real = PromptImageWorker._complete
    monkeypatch.setattr(PromptImageWorker, "_complete", lambda self, item: (release.wait(60), real(self, item))[1])
    settings = Settings(data_dir=tmp_path / "data", space="turbo-h", warm_umap=False, create_demo_map=False)
    with TestClient(create_app(settings, space=turbo_space)) as client:
        made = client.post("/api/maps", json={"title": "turbo"}).json()
        headers = {"X-Edit-Key": made["edit_key"]}
        r = client.post(f"/api/maps/{made['id']}/prompts", json={"prompts": ["a cat", "a dog"]}, headers=headers)
        assert r.status_code == 201, r.text
        item = r.json()["items"][0]
        assert item["pending"] is True and item["thumbnail"] is False
        at = {"x": item["x"], "y": item["y"], "seed": 1}
        early = client.post(f"/api/maps/{made['id']}/decode", json=at)  # from the provisional vector
        assert early.status_code == 200 and Image.open(io.BytesIO(early.content)).size == (SIZE, SIZE)
        assert client.get(f"/api/items/{item['id']}/thumbnail").status_code == 404  # not yet
        release.set()

        service = client.app.state.service
        assert service.prompt_images.wait_idle(120)
        points = client.get(f"/api/maps/{made['id']}/points").json()["points"]
        assert [(p["pending"], p["thumbnail"]) for p in points] == [(False, True), (False, True)]
        thumb = client.get(f"/api/items/{item['id']}/thumbnail")
        assert thumb.status_code == 200 and Image.open(io.BytesIO(thumb.content)).size[0] > 0
        stored = service.store.get_arrays(made["id"])
        expected = turbo_space.encode_prompts(["a cat", "a dog"])
        np.testing.assert_allclose(stored.decode_vectors, expected.decode_vectors, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(np.stack(stored.latents), expected.latents, rtol=1e-4, atol=1e-5)

        late = client.post(f"/api/maps/{made['id']}/decode", json=at)
        assert late.status_code == 200 and late.content != early.content  # not the provisional picture again
        assert client.post(f"/api/maps/{made['id']}/decode", json=at).content == late.content
        rows = {r["name"]: r for r in client.get("/api/spaces").json()}
        assert rows["turbo-h"]["loaded"] is True


def test_prompt_images_can_be_waited_for(turbo_space, tmp_path):
    settings = Settings(
        data_dir=tmp_path / "data", space="turbo-h", warm_umap=False, create_demo_map=False, defer_prompt_images=False
    )
    with TestClient(create_app(settings, space=turbo_space)) as client:
        made = client.post("/api/maps", json={"title": "turbo"}).json()
        r = client.post(
            f"/api/maps/{made['id']}/prompts", json={"prompts": ["a cat"]}, headers={"X-Edit-Key": made["edit_key"]}
        )
        assert r.json()["items"][0]["thumbnail"] is True and r.json()["items"][0]["pending"] is False
        assert client.app.state.service.prompt_images is None


def test_pending_prompt_images_survive_a_restart_and_failures(turbo_space, tmp_path, monkeypatch):
    from app.maps.store import NewItem, Store

    data = tmp_path / "data"
    store = Store(data)
    record, _ = store.create_map("left pending", "turbo-h")
    vectors = turbo_space.encode_text(["a cat", "a dog", "a cow"])
    provisional = turbo_space.text_to_image_side(vectors)
    items = [
        NewItem(kind="text", label=t, vector=vectors[i], decode_vector=provisional[i], pending_image=True)
        for i, t in enumerate(["a cat", "a dog", "a cow"])
    ]
    ids = [r.id for r in store.add_items(record.id, items, np.zeros((3, 2), np.float32))]
    store.delete_item(record.id, ids[2])
    assert store.complete_image(ids[2], provisional[2], None, b"png") is False  # deleted: nothing written
    assert not (data / "thumbnails" / f"{ids[2]}.png").exists()
    store.close()

    real = turbo_space.prompt_images

    def failing_for_a_dog(texts):
        if texts == ["a dog"]:
            raise RuntimeError("boom")
        return real(texts)

    monkeypatch.setattr(turbo_space, "prompt_images", failing_for_a_dog)
    settings = Settings(data_dir=data, space="turbo-h", warm_umap=False, create_demo_map=False)
    with TestClient(create_app(settings, space=turbo_space)) as client:  # picks up what was left pending
        service = client.app.state.service
        assert service.prompt_images.wait_idle(120)
        cat, dog = service.store.points(record.id)
        assert (cat.pending_image, cat.has_thumbnail) == (False, True)
        assert (dog.pending_image, dog.has_thumbnail) == (False, False)  # failed: keeps its text-side vector
        arrays = service.store.get_arrays(record.id)
        np.testing.assert_allclose(arrays.decode_vectors[1], provisional[1], rtol=1e-6)
        assert not np.allclose(arrays.decode_vectors[0], provisional[0])


# ---------------------------------------------------------------------------------------------- model management
def test_bin_weights_are_refused_with_a_clear_message(unclip_paths, tmp_path, monkeypatch):
    bad = tmp_path / "taesd-with-pickle"
    shutil.copytree(unclip_paths["taesd"], bad)
    (bad / "diffusion_pytorch_model.bin").write_bytes(b"not really a pickle")
    monkeypatch.setenv("LATENTMAP_TAESD_ID", str(bad))
    with pytest.raises(UnsafeWeightsError, match=r"diffusion_pytorch_model\.bin.*safetensors only"):
        hub.locate("unclip-h", hub.components("unclip-h")["taesd"])
    problems = hub.missing("turbo-h")  # taesd is required there
    assert any("safetensors only" in p for p in problems)


def test_missing_weights_name_the_download_command(monkeypatch, tmp_path):
    monkeypatch.setenv("LATENTMAP_UNCLIP_H_PIPELINE_ID", "latentmap-tests/not-a-real-repo")
    monkeypatch.setenv("LATENTMAP_CLIP_H_ID", str(tmp_path / "nowhere"))
    with pytest.raises(hub.MissingWeightsError, match="nowhere.*not a directory"):
        hub.resolve("unclip-h")
    monkeypatch.setenv("LATENTMAP_CLIP_H_ID", "latentmap-tests/no-clip-here")
    with pytest.raises(hub.MissingWeightsError, match="latentmap download unclip-h"):
        hub.resolve("unclip-h")
    settings = Settings(data_dir=tmp_path, space="unclip-h", device="cpu")
    ok, why = registry.SPACES["unclip-h"].available(settings)
    assert not ok and "latentmap download unclip-h" in why and "not-a-real-repo" in why
    with pytest.raises(RuntimeError, match="latentmap download unclip-h"):
        registry.load_space(settings)


def test_local_dir_missing_files_is_explained(unclip_paths, tmp_path, monkeypatch):
    partial = tmp_path / "pipeline"
    shutil.copytree(unclip_paths["pipeline"], partial)
    shutil.rmtree(partial / "unet")
    monkeypatch.setenv("LATENTMAP_UNCLIP_H_PIPELINE_ID", str(partial))
    with pytest.raises(hub.MissingWeightsError, match=r"unet/\*\.safetensors"):
        hub.locate("unclip-h", hub.components("unclip-h")["pipeline"])


def test_env_overrides_ids_and_revisions(monkeypatch):
    default = hub.components("turbo-h")["sd15"]
    assert default.repo_id == "stable-diffusion-v1-5/stable-diffusion-v1-5" and not default.is_local
    monkeypatch.setenv("LATENTMAP_TURBO_H_SD15_ID", "someone/sd15-fork")
    monkeypatch.setenv("LATENTMAP_TURBO_H_SD15_REVISION", "abc123")
    comp = hub.components("turbo-h")["sd15"]
    assert (comp.repo_id, comp.revision) == ("someone/sd15-fork", "abc123")
    assert hub.components("unclip-h")["clip"].repo_id == hub.components("turbo-h")["clip"].repo_id  # one CLIP
    assert all("*.bin" not in p and "*" != p for c in hub.components("turbo-h").values() for p in c.allow_patterns)


def test_no_gpu_means_digits_and_a_reason(monkeypatch, tmp_path):
    monkeypatch.setattr(registry, "_cuda_available", lambda: False)
    assert registry.resolve_name("auto") == "digits"
    rows = {r["name"]: r for r in registry.describe_spaces(Settings(data_dir=tmp_path), None)}
    for name in ("unclip-h", "turbo-h"):
        assert rows[name]["available"] is False
        assert "no CUDA GPU" in rows[name]["reason"]
    monkeypatch.setattr(registry, "_cuda_available", lambda: True)
    monkeypatch.setattr(hub, "missing", lambda space: [])
    assert registry.resolve_name("auto") == "unclip-h"
    monkeypatch.setattr(hub, "missing", lambda space: ["clip (x@main) not in the cache"])
    assert registry.resolve_name("auto") == "digits"
    assert registry.resolve_name("turbo-h") == "turbo-h"


def test_download_cli(monkeypatch, capsys):
    assert cli.main(["download", "turbo-h", "--dry-run"]) == 0
    out = capsys.readouterr().out
    for repo in (
        "laion/CLIP-ViT-H-14-laion2B-s32B-b79K",
        "stable-diffusion-v1-5/stable-diffusion-v1-5",
        "h94/IP-Adapter",
        "latent-consistency/lcm-lora-sdv1-5",
        "madebyollin/taesd",
    ):
        assert repo in out
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert cli.main(["download", "unclip-h"]) == 1
    assert "HF_HUB_OFFLINE" in capsys.readouterr().err
    assert cli.main(["download", "digits"]) == 2


def test_dockerfile_matches_cli_defaults():
    text = (REPO_ROOT / "Dockerfile").read_text()
    cmd = json.loads(re.search(r"^CMD\s+(\[.*\])\s*$", text, re.M).group(1))
    exposed = [int(p) for p in re.search(r"^EXPOSE\s+(.+)$", text, re.M).group(1).split()]
    defaults = Settings()
    assert cmd[:2] == ["latentmap", "serve"]
    args = cli.build_parser().parse_args(cmd[1:])
    port = args.port if args.port is not None else defaults.port
    assert port == defaults.port and exposed == [defaults.port]
    assert args.host == "0.0.0.0"  # reachable from outside the container
    health = re.search(r"HEALTHCHECK.*\n\s*CMD .*?:(\d+)/api/health", text)
    assert health and int(health.group(1)) == defaults.port


def test_download_fetches_only_safetensors_json_txt(monkeypatch, tmp_path):
    import huggingface_hub

    calls = []

    def fake_snapshot_download(repo_id, revision=None, allow_patterns=None, ignore_patterns=None, **kw):
        assert not kw.get("local_files_only")
        calls.append((repo_id, revision, list(allow_patterns), list(ignore_patterns)))
        folder = tmp_path / repo_id.replace("/", "--")
        comp = next(c for c in hub.components("turbo-h").values() if c.repo_id == repo_id)
        for pattern in comp.required:  # pretend the hub had exactly the required files
            f = folder / pattern.replace("*", "model")
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text("{}")
        return str(folder)

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("LATENTMAP_TURBO_H_LCM_LORA_REVISION", "v1-pinned")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    paths = hub.download_space("turbo-h", progress=False)
    assert set(paths) == {"clip", "sd15", "ip_adapter", "lcm_lora", "taesd"}
    assert ("latent-consistency/lcm-lora-sdv1-5", "v1-pinned") in [(c[0], c[1]) for c in calls]
    for _, _, allow, ignore in calls:
        assert all(p.endswith((".safetensors", ".json", ".txt")) for p in allow)
        assert "*.bin" in ignore and "*.ckpt" in ignore


def run_bench(script: str, *args, timeout: int = 600) -> subprocess.CompletedProcess:
    """A bench/ script as the GPU session runs it (one thread here: the tests share the cores)."""
    cmd = [sys.executable, str(REPO_ROOT / "bench" / script), *map(str, args)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def test_gpu_benchmark_script_runs_at_toy_size(tmp_path):
    """bench/gpu_spaces.py is what runs on a GPU machine (one prepared command): it must not rot here."""
    out = tmp_path / "gpu.json"
    proc = run_bench("gpu_spaces.py", "--tiny", "--device", "cpu", "--n", "2", "--reference-prompts", "2", "--out", out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())
    assert [r["space"] for r in rows] == ["unclip-h", "turbo-h"]
    for r in rows:
        assert r["weights"].startswith("RANDOM") and r["device"] == "cpu"
        assert r["decode_p50_s"] > 0 and r["preview_p50_s"] > 0 and r["encode_images_per_s"] > 0


def test_gpu_suite_runs_at_toy_size(tmp_path):
    """bench/gpu_suite.py is the one prepared command for a GPU session (encode, prompt and decode ratios on the
    real spaces): it must run end to end here, on toy sizes."""
    proc = run_bench("gpu_suite.py", "--tiny", "--space", "turbo-h", "--out", tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    tables = {p.name: p.read_text() for p in tmp_path.glob("*.md")}
    assert set(tables) == {
        f"{b}-turbo-h.md" for b in ("gpu_spaces", "encode", "prompt_latency", "decode", "own_models", "terrain")
    }
    assert all(t.startswith("RANDOM WEIGHTS") for t in tables.values())
    assert "| POST /decode (cache miss, real server) |" in tables["decode-turbo-h.md"]
    own = tables["own_models-turbo-h.md"]
    assert (
        "| load: single-file checkpoint (original layout) |" in own and "| decode, 3 LoRAs loaded, one LoRA on |" in own
    )
    assert "| **tile ÷ single decodes** |" in tables["terrain-turbo-h.md"]


def test_batched_decode_steps_give_each_requests_own_picture(space):
    """Terrain tiles decode their cells in batches, a denoising step a slice (Space.decode_steps): every cell is
    the picture its single decode gives (its own seed's noise), up to float rounding of the batched calls."""
    rng = np.random.default_rng(0)
    v0, v1 = (rng.standard_normal((2, space.dim)) * 5).astype(np.float32)
    requests = [DecodeRequest(vector=v0, seed=3), DecodeRequest(vector=v1, seed=4), DecodeRequest(vector=v0, seed=3)]
    singles = [space.decode([r])[0] for r in requests]
    slices = list(space.decode_steps(requests, batch_size=2))
    assert all(s is None for s in slices[:-1]) and len(slices) > 2  # short slices, clicks can go between them
    for single, batched in zip(singles, slices[-1]):
        assert np.abs(np.asarray(single, np.float32) - np.asarray(batched, np.float32)).mean() < 1.0
    again = list(space.decode_steps(requests, batch_size=2))[-1]  # the same batches: the same bytes
    assert [np.asarray(a).tolist() for a in again] == [np.asarray(b).tolist() for b in slices[-1]]

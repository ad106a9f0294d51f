"""Your own model files (issue 19): single-file checkpoints, Kohya and PEFT LoRAs, lineage, space files, inspect.

Tiny models with the SD 1.x block structure (4 levels, 2 layers each, toy widths; configs/arch/tiny.json
"sd1_unet") are written as the files people download: a checkpoint in the original key layout
("model.diffusion_model.*", "first_stage_model.*", "cond_stage_model.transformer.*"), a Kohya LoRA
("lora_unet_*"/"lora_te_*" with lora_down/lora_up/alpha) and a diffusers/PEFT LoRA, each with a realistic
metadata header; they are loaded through the same code a user's files take (registry.load_space with the
settings `latentmap serve --checkpoint/--lora` and a space file produce).
"""

import json

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from safetensors.torch import save_file

from app import cli
from app.main import create_app
from app.settings import Settings
from app.spaces import own_models, registry, turbo
from app.spaces.base import DecodeRequest
from app.spaces.checkpoints import write_sd1_checkpoint
from app.spaces.model_files import file_hashes, read_header
from app.spaces.vith import CONFIG_DIR
from tests.helpers import TINY_ARCH as ARCH
from tests.helpers import TINY_SPACE_CONFIG as TEST_CONFIG

ENV = {
    "clip": "CLIP_H",
    "sd15": "TURBO_H_SD15",
    "ip_adapter": "TURBO_H_IP_ADAPTER",
    "lcm_lora": "TURBO_H_LCM_LORA",
    "taesd": "TAESD",
}


@pytest.fixture(scope="module")
def sd1(tmp_path_factory):
    """turbo-h's components at toy size with an SD 1.x-structured UNet, in the hub layout."""
    return turbo.build_random(tmp_path_factory.mktemp("sd1-turbo"), ARCH, unet_key="sd1_unet")


@pytest.fixture(scope="module")
def files(sd1, tmp_path_factory):
    """The files a user has downloaded, made from the same weights as the sd15 folder."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    root = tmp_path_factory.mktemp("downloads")
    unet = UNet2DConditionModel.from_pretrained(sd1["sd15"] / "unet", use_safetensors=True)
    text_encoder = CLIPTextModel.from_pretrained(sd1["sd15"] / "text_encoder", use_safetensors=True)
    torch.manual_seed(1)
    vae = AutoencoderKL(**ARCH["vae"])
    ckpt = root / "my-finetune.safetensors"
    meta = {
        "modelspec.sai_model_spec": "1.0.0",
        "modelspec.architecture": "stable-diffusion-v1",
        "modelspec.implementation": "https://github.com/Stability-AI/generative-models",
        "modelspec.title": "My fine-tune",
        "modelspec.trigger_phrase": "mfstyle",
        "modelspec.license": "CreativeML Open RAIL-M",
    }
    write_sd1_checkpoint(ckpt, unet, text_encoder, vae, meta)
    _, _, length = read_header(ckpt)
    own = file_hashes(ckpt, length)["tensor_sha256"]  # Kohya's modelspec.hash_sha256: the bytes after the header
    write_sd1_checkpoint(ckpt, unet, text_encoder, vae, {**meta, "modelspec.hash_sha256": "0x" + own})
    base_hashes = file_hashes(ckpt, read_header(ckpt)[2])

    kohya = root / "pixel-style.safetensors"
    save_file(
        own_models.kohya_lora_state_dict(unet, text_encoder, rank=4, seed=2),
        str(kohya),
        metadata={
            "ss_base_model_version": "sd_v1",
            "ss_sd_model_name": "my-finetune.safetensors",
            "ss_new_sd_model_hash": base_hashes["sha256"],
            "ss_sd_model_hash": base_hashes["legacy_hash"],
            "ss_network_module": "networks.lora",
            "ss_network_dim": "4",
            "ss_network_alpha": "2.0",
            "ss_output_name": "pixel-style",
            "modelspec.sai_model_spec": "1.0.0",
            "modelspec.architecture": "stable-diffusion-v1/lora",
            "modelspec.title": "Pixel style",
            "modelspec.trigger_phrase": "pixel art",
        },
    )
    peft = own_models.peft_lora_file(
        unet,
        root / "soft-light.safetensors",
        rank=4,
        seed=3,
        scale=4.0,
        metadata={
            "modelspec.sai_model_spec": "1.0.0",
            "modelspec.architecture": "stable-diffusion-v1-lora",
            "modelspec.title": "Soft light",
            "ss_sd_model_name": "runwayml/stable-diffusion-v1-5",
            "ss_new_sd_model_hash": "6ce0161689b3853acaa03779ec93eafe75a02f4ced659bee03f50797806fa2fa",
        },
    )

    g = torch.Generator().manual_seed(4)  # an SDXL LoRA: two text encoders, SGM block names, 2048-d cross-attention
    sdxl = root / "xl-style.safetensors"
    save_file(
        {
            "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.lora_down.weight": torch.randn(
                4, 2048, generator=g
            ),
            "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.lora_up.weight": torch.randn(
                640, 4, generator=g
            ),
            "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.alpha": torch.tensor(4.0),
            "lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight": torch.randn(4, 768, generator=g),
            "lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight": torch.randn(768, 4, generator=g),
            "lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight": torch.randn(4, 1280, generator=g),
            "lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight": torch.randn(1280, 4, generator=g),
        },
        str(sdxl),
        metadata={
            "ss_base_model_version": "sdxl_base_v1-0",
            "ss_sd_model_name": "sd_xl_base_1.0.safetensors",
            "modelspec.architecture": "stable-diffusion-xl-v1-base/lora",
            "modelspec.title": "XL style",
        },
    )

    wide_cfg = {
        **{k: v for k, v in ARCH["sd1_unet"].items() if not k.startswith("_")},
        "block_out_channels": [64, 64, 128, 128],
    }  # SD 1.x structure, other widths: shapes do not fit
    misfit = root / "wide-style.safetensors"
    save_file(
        own_models.kohya_lora_state_dict(UNet2DConditionModel(**wide_cfg), rank=4, seed=5),
        str(misfit),
        metadata={"ss_base_model_version": "sd_v1", "modelspec.title": "Wide style"},
    )

    sd2 = root / "sd2-finetune.safetensors"  # SD 2.x layout: OpenCLIP text encoder, linear proj_in
    save_file(
        {
            "model.diffusion_model.input_blocks.0.0.weight": torch.zeros(32, 4, 3, 3),
            "model.diffusion_model.input_blocks.1.1.proj_in.weight": torch.zeros(32, 32),
            "cond_stage_model.model.token_embedding.weight": torch.zeros(10, 32),
            "first_stage_model.decoder.conv_in.weight": torch.zeros(8, 4, 3, 3),
        },
        str(sd2),
    )

    pickle = root / "old-model.ckpt"
    pickle.write_bytes(b"\x80\x04\x95 not opened")
    text = root / "notes.safetensors"
    text.write_text("this is not a model")
    return {
        "ckpt": ckpt,
        "kohya": kohya,
        "peft": peft,
        "sdxl": sdxl,
        "misfit": misfit,
        "sd2": sd2,
        "pickle": pickle,
        "text": text,
        "base_sha256": base_hashes["sha256"],
        "own_sha256": own,
    }


def _settings(tmp_path, **options) -> Settings:
    return Settings(data_dir=tmp_path / "data", space=options.pop("space", "turbo-h"), device="cpu", **options)


@pytest.fixture(scope="module")
def env(sd1, tmp_path_factory):
    config = tmp_path_factory.mktemp("cfg") / "turbo.json"
    config.write_text(json.dumps(TEST_CONFIG))
    values = {f"LATENTMAP_{ENV[k]}_ID": str(p) for k, p in sd1.items()}
    values["LATENTMAP_TURBO_H_CONFIG"] = str(config)
    with pytest.MonkeyPatch.context() as mp:
        for k, v in values.items():
            mp.setenv(k, v)
        yield values


@pytest.fixture(scope="module")
def folder_space(env, tmp_path_factory):
    return registry.load_space(_settings(tmp_path_factory.mktemp("folder")))


@pytest.fixture(scope="module")
def own_space(env, files, tmp_path_factory):
    """turbo-h from a space file naming the checkpoint and the Kohya LoRA, plus --lora for the PEFT one."""
    root = files["ckpt"].parent
    space_file = root / "myspace.toml"
    space_file.write_text(
        'space = "turbo-h"\ncheckpoint = "my-finetune.safetensors"\n\n'
        '[[loras]]\nfile = "pixel-style.safetensors"\nstrength = 0.8\n'
    )
    return registry.load_space(
        _settings(tmp_path_factory.mktemp("own"), space=str(space_file), loras=f"{files['peft']}:0.5")
    )


def _pixels(space, variant=None, lora_scale=None, seed=3, latent=None, strength=1.0):
    v = np.random.default_rng(0).standard_normal(space.dim).astype(np.float32)
    image = space.decode(
        [DecodeRequest(vector=v, seed=seed, variant=variant, lora_scale=lora_scale, latent=latent, strength=strength)]
    )[0]
    return np.asarray(image, dtype=np.int16)


# ---------------------------------------------------------------------------------------------- inspect
def _inspect(capsys, path, *flags):
    code = cli.main(["inspect", str(path), *flags])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_inspect_each_file(files, capsys):
    code, out, _ = _inspect(capsys, files["ckpt"], "--json")
    row = json.loads(out)
    assert code == 0 and (row["kind"], row["family"], row["family_from"]) == ("checkpoint", "SD 1.x", "key shapes")
    assert row["lineage"]["title"] == "My fine-tune" and row["lineage"]["trigger_phrase"] == "mfstyle"
    assert row["sha256"] == files["base_sha256"] and row["stated_sha256_matches"] is True

    row = json.loads(_inspect(capsys, files["kohya"], "--json")[1])
    assert (row["kind"], row["family"], row["rank"]) == ("lora", "SD 1.x", 4)
    assert row["parts"] == ["text encoder", "unet"]
    lin = row["lineage"]
    assert lin["stated_base"] == "my-finetune.safetensors" and lin["stated_base_sha256"] == files["base_sha256"]
    assert (lin["network_dim"], lin["network_alpha"], lin["trigger_phrase"]) == ("4", "2.0", "pixel art")
    assert lin["architecture"] == "stable-diffusion-v1/lora" and lin["base_model_version"] == "sd_v1"

    row = json.loads(_inspect(capsys, files["peft"], "--json")[1])
    assert (row["kind"], row["family"], row["family_from"]) == ("lora", "SD 1.x", "metadata")  # toy widths say nothing
    assert row["lineage"]["architecture"] == "stable-diffusion-v1-lora" and row["parts"] == ["unet"]

    row = json.loads(_inspect(capsys, files["sdxl"], "--json")[1])
    assert (row["kind"], row["family"], row["family_from"]) == ("lora", "SDXL", "key shapes")
    row = json.loads(_inspect(capsys, files["sd2"], "--json", "--no-hash")[1])
    assert (row["kind"], row["family"]) == ("checkpoint", "SD 2.x") and "sha256" not in row

    code, out, _ = _inspect(capsys, files["kohya"])  # the human-readable form
    assert code == 0
    for text in (
        "kind:    LoRA/LyCORIS",
        "family:  SD 1.x",
        "trained on:     my-finetune.safetensors",
        "trigger:        pixel art",
        "dim:            4",
        files["base_sha256"][:16],
    ):
        assert text in out


def test_inspect_refuses_pickles_unopened_and_non_safetensors(files, capsys, tmp_path):
    code, out, err = _inspect(capsys, files["pickle"])
    assert code == 1 and out == "" and "pickle" in err and "never opens" in err and "old-model.ckpt" in err
    code, _, err = _inspect(capsys, tmp_path / "absent.pt")  # refused by name: nothing is read, not even existence
    assert code == 1 and "pickle" in err and "no such file" not in err
    code, _, err = _inspect(capsys, files["text"])
    assert code == 1 and "not a safetensors file" in err


# ---------------------------------------------------------------------------------------------- checkpoints
def test_checkpoint_decodes_as_the_same_weights_in_diffusers_layout(folder_space, own_space, files):
    assert own_space.info["provenance"]["checkpoint"] == str(files["ckpt"])
    base = own_space.info["lineage"]
    assert (base["file"], base["family"], base["base_model"]) == ("my-finetune.safetensors", "SD 1.x", "My fine-tune")
    assert base["sha256"] == files["base_sha256"] and base["trigger_phrase"] == "mfstyle"
    np.testing.assert_array_equal(_pixels(own_space), _pixels(folder_space))
    lat = own_space.encode_images(
        [own_space.decode([DecodeRequest(vector=np.ones(own_space.dim, np.float32), seed=0)])[0]]
    ).latents[0]
    np.testing.assert_array_equal(
        _pixels(own_space, latent=lat, strength=0.5), _pixels(folder_space, latent=lat, strength=0.5)
    )
    # the decode cache tells the two bases apart; the default weights keep their old keys
    assert folder_space.decoder_identity(None) == "" and own_space.decoder_identity(None) != ""


def test_checkpoint_of_another_family_is_refused_naming_both(env, files, tmp_path):
    with pytest.raises(
        own_models.OwnModelError,
        match=r"sd2-finetune\.safetensors is a checkpoint made for SD 2\.x.*"
        r"turbo-h is built on SD 1\.x",
    ):
        registry.load_space(_settings(tmp_path, checkpoint=str(files["sd2"])))
    with pytest.raises(
        own_models.OwnModelError,
        match=r"pixel-style\.safetensors is a LoRA/LyCORIS file, not a "
        r"checkpoint",
    ):
        registry.load_space(_settings(tmp_path, checkpoint=str(files["kohya"])))
    # the header-only check `latentmap serve` runs before starting, for unclip-h's family too
    with pytest.raises(
        own_models.OwnModelError,
        match=r"my-finetune\.safetensors is a checkpoint made for SD 1\.x.*"
        r"unclip-h is built on SD 2\.x",
    ):
        own_models.precheck(_settings(tmp_path, space="unclip-h", checkpoint=str(files["ckpt"])))


def test_checkpoint_that_fits_no_config_is_refused(files, tmp_path):
    # Without an sd15 folder the shipped SD 1.5 configs are used; a toy-width checkpoint does not fit them.
    with pytest.raises(
        own_models.OwnModelError,
        match=r"does not fit turbo-h's SD 1\.x decoder: SD 1\.5's configs: "
        r"UNet width 32, the config's is 320",
    ):
        turbo._checkpoint_config(files["ckpt"], None, tmp_path, 1 << 20)


def test_shipped_sd15_configs_are_the_real_architecture(tmp_path):
    from app.spaces.checkpoints import sd15_config_dir

    real = json.loads((CONFIG_DIR / "arch" / "real.json").read_text())
    folder = sd15_config_dir(tmp_path / "sd15-config")
    unet = json.loads((folder / "unet" / "config.json").read_text())
    assert all(unet[k] == v for k, v in real["sd15_unet"].items() if k != "sample_size")
    text = json.loads((folder / "text_encoder" / "config.json").read_text())
    assert all(text[k] == real["text_encoder"][k] for k in ("hidden_size", "num_hidden_layers", "intermediate_size"))
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(folder / "tokenizer")
    assert len(tok) == 49408 and tok("a photo of a cat").input_ids[0] == 49406


def test_real_size_original_layout_round_trips_through_diffusers_conversion():
    """At SD 1.5's real size (meta tensors: shapes, no memory): the original-layout keys our writer makes are the
    ones diffusers' single-file conversion turns back into the shipped configs' UNet and VAE, shape for shape."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import (
        convert_ldm_unet_checkpoint,
        convert_ldm_vae_checkpoint,
    )

    from app.spaces.checkpoints import (
        SD15_CONFIG_DIR,
        unet_to_original,
        vae_to_original,
    )

    for cls, sub, to_original, prefix, convert in (
        (UNet2DConditionModel, "unet", unet_to_original, "model.diffusion_model.", convert_ldm_unet_checkpoint),
        (AutoencoderKL, "vae", vae_to_original, "first_stage_model.", convert_ldm_vae_checkpoint),
    ):
        with torch.device("meta"):
            model = cls.from_config(json.loads((SD15_CONFIG_DIR / sub / "config.json").read_text()))
        state = model.state_dict()
        back = convert({prefix + k: v for k, v in to_original(state).items()}, dict(model.config))
        assert set(back) == set(state), sub
        assert all(tuple(back[k].shape) == tuple(state[k].shape) for k in state), sub


# ---------------------------------------------------------------------------------------------- LoRAs
def test_loras_become_variants_with_lineage(own_space, files):
    rows = {v["name"]: v for v in own_space.variants()}
    assert set(rows) == {"pixel-style", "soft-light"}
    kohya, peft = rows["pixel-style"], rows["soft-light"]
    assert kohya["kind"] == "lora" and kohya["default_scale"] == 0.8 and kohya["rank"] == 4  # from the space file
    assert peft["default_scale"] == 0.5  # from --lora FILE:0.5
    lin = kohya["lineage"]
    assert (lin["file"], lin["family"], lin["stated_base"]) == (
        "pixel-style.safetensors",
        "SD 1.x",
        "my-finetune.safetensors",
    )
    assert lin["stated_base_sha256"] == files["base_sha256"] and lin["trigger_phrase"] == "pixel art"
    assert (lin["made_for_this_base"], lin["base_match"]) == (True, "made for this base")
    lin = peft["lineage"]
    assert lin["made_for_this_base"] is False
    assert lin["base_match"] == "made for another base: runwayml/stable-diffusion-v1-5"
    # Kohya's text-encoder part is loaded too (the empty prompt goes through it)
    assert any("lora" in n for n, _ in own_space.pipe.text_encoder.named_parameters())


def test_lora_changes_the_decode_and_strength_zero_is_the_base(own_space, folder_space):
    base = _pixels(own_space)
    np.testing.assert_array_equal(base, _pixels(folder_space))  # LoRAs loaded: the base is bit-identical
    for name in ("pixel-style", "soft-light"):
        assert np.abs(_pixels(own_space, name) - base).mean() > 1.0
        np.testing.assert_array_equal(_pixels(own_space, name, 0.0), base)
    assert np.abs(_pixels(own_space, "pixel-style", 1.5) - _pixels(own_space, "pixel-style", 0.5)).mean() > 0.5
    assert own_space.resolve_variant("pixel-style", None) == ("pixel-style", 0.8)
    with pytest.raises(ValueError, match="unknown decoder variant"):
        own_space.resolve_variant("nope", None)
    assert own_space.decoder_identity("pixel-style") not in ("", own_space.decoder_identity("soft-light"))


def test_loras_refused_for_another_family_or_misfitting_shapes(own_space, files):
    with pytest.raises(
        own_models.OwnModelError,
        match=r"xl-style\.safetensors is a LoRA made for SDXL \(from its key "
        r"shapes.*\); turbo-h is built on SD 1\.x",
    ):
        own_space.load_loras([own_models.LoraChoice(str(files["sdxl"]))], 1 << 20)
    with pytest.raises(
        own_models.OwnModelError,
        match=r"LoRA wide-style\.safetensors \(made for SD 1\.x\) does not fit "
        r"turbo-h's SD 1\.x decoder: unet\.down_blocks.*64, the layer is",
    ):
        own_space.load_loras([own_models.LoraChoice(str(files["misfit"]))], 1 << 20)
    with pytest.raises(own_models.OwnModelError, match="pickle"):
        own_space.load_loras([own_models.LoraChoice(str(files["pickle"]))], 1 << 20)
    assert {v["name"] for v in own_space.variants()} == {"pixel-style", "soft-light"}  # nothing half-loaded


def test_http_lineage_and_compare(own_space, tmp_path):
    settings = Settings(
        data_dir=tmp_path / "data", space="turbo-h", warm_umap=False, create_demo_map=False, defer_prompt_images=False
    )
    with TestClient(create_app(settings, space=own_space)) as client:
        rows = {r["name"]: r for r in client.get("/api/spaces").json()}
        info = rows["turbo-h"]["info"]
        assert info["lineage"]["file"] == "my-finetune.safetensors"
        assert [v["lineage"]["base_match"] for v in info["variants"]] == [
            "made for this base",
            "made for another base: runwayml/stable-diffusion-v1-5",
        ]
        listed = client.get("/api/variants").json()
        assert listed["lineage"]["sha256"] == info["lineage"]["sha256"] and len(listed["variants"]) == 2
        made = client.post("/api/maps", json={"title": "own"}).json()
        r = client.post(
            f"/api/maps/{made['id']}/prompts",
            json={"prompts": ["a cat", "a dog", "a cow"]},
            headers={"X-Edit-Key": made["edit_key"]},
        )
        assert r.status_code == 201, r.text
        r = client.post(
            f"/api/maps/{made['id']}/compare",
            json={
                "x": 0.1,
                "y": 0.2,
                "seed": 1,
                "variants": ["base", "pixel-style", {"variant": "pixel-style", "lora_scale": 0.0}],
            },
        )
        assert r.status_code == 200, r.text
        images = r.json()["images"]
        assert [(i["variant"], i["lora_scale"]) for i in images] == [
            ("base", None),
            ("pixel-style", 0.8),
            ("pixel-style", 0.0),
        ]
        pngs = [client.get(i["url"]).content for i in images]
        assert pngs[0] != pngs[1] and pngs[0] == pngs[2]  # strength 0 is the base picture


# ---------------------------------------------------------------------------------------------- options
def test_serve_flags_and_space_files(files, tmp_path, monkeypatch):
    args = cli.build_parser().parse_args(
        [
            "serve",
            "--space",
            "turbo-h",
            "--checkpoint",
            str(files["ckpt"]),
            "--lora",
            f"{files['kohya']}:0.7",
            "--lora",
            str(files["peft"]),
        ]
    )
    settings = cli._settings(args)
    assert settings.checkpoint == str(files["ckpt"])
    assert [(c.source, c.strength) for c in own_models.choice_from_settings(settings).loras] == [
        (str(files["kohya"]), 0.7),
        (str(files["peft"]), 1.0),
    ]
    monkeypatch.setenv("LATENTMAP_LORAS", f"{files['kohya']}|{files['peft']}:0.25")
    assert [c.strength for c in own_models.choice_from_settings(Settings.from_env()).loras] == [1.0, 0.25]

    json_file = tmp_path / "space.json"
    json_file.write_text(
        json.dumps(
            {
                "space": "turbo-h",
                "checkpoint": str(files["ckpt"]),
                "loras": [{"file": str(files["kohya"]), "strength": 0.6, "name": "px"}],
            }
        )
    )
    applied = registry.space_settings(Settings(space=str(json_file), loras=str(files["peft"])))
    assert applied.space == "turbo-h" and applied.checkpoint == str(files["ckpt"])
    assert [(c.name, c.strength) for c in own_models.choice_from_settings(applied).loras] == [("px", 0.6), (None, 1.0)]
    bad = tmp_path / "bad.toml"
    bad.write_text('space = "turbo-h"\nlora = "typo.safetensors"\n')
    with pytest.raises(own_models.OwnModelError, match="unknown keys lora"):
        registry.space_settings(Settings(space=str(bad)))


def test_serve_refuses_another_family_at_start(files, tmp_path, capsys):
    code = cli.main(["serve", "--space", "turbo-h", "--data-dir", str(tmp_path), "--lora", str(files["sdxl"])])
    err = capsys.readouterr().err
    assert code == 1 and "xl-style.safetensors is a LoRA made for SDXL" in err and "SD 1.x" in err
    code = cli.main(["serve", "--space", "turbo-h", "--data-dir", str(tmp_path), "--checkpoint", str(files["pickle"])])
    assert code == 1 and "pickle" in capsys.readouterr().err
    code = cli.main(["serve", "--space", "digits", "--data-dir", str(tmp_path), "--checkpoint", str(files["ckpt"])])
    assert code == 1


def test_base_folder_of_another_family_is_refused(tmp_path):
    folder = tmp_path / "sdxl-diffusers"
    (folder / "unet").mkdir(parents=True)
    (folder / "unet" / "config.json").write_text(
        json.dumps({"cross_attention_dim": 2048, "addition_embed_type": "text_time"})
    )
    with pytest.raises(
        own_models.OwnModelError, match=r"sdxl-diffusers is a SDXL pipeline; turbo-h is built on SD 1\.x"
    ):
        own_models.check_base_folder(folder, "turbo-h")
    own_models.check_base_folder(folder.parent, "turbo-h")  # no UNet config: nothing to say (loading will tell)


def test_unclip_h_takes_a_lora_too(tmp_path, monkeypatch):
    """unclip-h's pipeline has the same LoRA loader: a PEFT LoRA is a variant there, strength 0 is the base."""
    from diffusers import UNet2DConditionModel

    from app.spaces import unclip

    paths = unclip.build_random(tmp_path / "unclip", ARCH)
    lora = own_models.peft_lora_file(
        UNet2DConditionModel.from_pretrained(paths["pipeline"] / "unet"),
        tmp_path / "u-style.safetensors",
        rank=4,
        seed=6,
        scale=4.0,
    )
    config = tmp_path / "unclip.json"
    config.write_text(json.dumps(TEST_CONFIG))
    for key, env_name in (("clip", "CLIP_H"), ("pipeline", "UNCLIP_H_PIPELINE"), ("taesd", "TAESD")):
        monkeypatch.setenv(f"LATENTMAP_{env_name}_ID", str(paths[key]))
    monkeypatch.setenv("LATENTMAP_UNCLIP_H_CONFIG", str(config))
    space = registry.load_space(_settings(tmp_path, space="unclip-h", loras=f"{lora}:0.7"))
    (row,) = space.variants()
    assert (row["name"], row["default_scale"], row["lineage"]["file"]) == ("u-style", 0.7, "u-style.safetensors")
    assert row["lineage"]["made_for_this_base"] is None  # no stated base hash
    base = _pixels(space)
    assert np.abs(_pixels(space, "u-style") - base).mean() > 0.5
    np.testing.assert_array_equal(_pixels(space, "u-style", 0.0), base)
    sd2 = tmp_path / "sd21-finetune.safetensors"
    save_file(
        {
            "model.diffusion_model.input_blocks.0.0.weight": torch.zeros(32, 4, 3, 3),
            "cond_stage_model.model.token_embedding.weight": torch.zeros(10, 32),
        },
        str(sd2),
    )
    with pytest.raises(own_models.OwnModelError, match=r"single-file checkpoints load on turbo-h.*--base"):
        registry.load_space(_settings(tmp_path, space="unclip-h", checkpoint=str(sd2)))
    with pytest.raises(
        own_models.OwnModelError, match=r"u-style\.safetensors is a LoRA/LyCORIS file, not a checkpoint"
    ):
        registry.load_space(_settings(tmp_path, space="unclip-h", checkpoint=str(lora)))

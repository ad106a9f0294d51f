"""Your own model files on the real spaces: a single-file checkpoint (or another base folder / hub id) replacing the
space's base weights, LoRAs decoded as variants beside the base, and each decoder's lineage.

    latentmap serve --space turbo-h --checkpoint dreamshaper_8.safetensors --lora pixel.safetensors:0.8
    latentmap serve --space ./myspace.toml          # the same, written down (see read_space_file)

Nothing here downloads: local files, or hub ids already in the Hugging Face cache (`local_files_only=True`).
Every file is checked from its header first (`model_files.inspect`): pickles are refused unopened, a file of
another family is refused naming both families, a LoRA whose shapes do not fit the loaded UNet / text encoder is
refused naming the file, its family and the first misfit.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import model_files
from .model_files import SD1, SD2, UNKNOWN, ModelFileError

SPACE_FAMILY = {"turbo-h": SD1, "unclip-h": SD2}  # the family each real space's decoder is built on
BASE_COMPONENT = {"turbo-h": "sd15", "unclip-h": "pipeline"}  # the hub component a --base / --checkpoint replaces
SPACE_FILE_SUFFIXES = (".toml", ".json")
LORA_SEPARATOR = "|"  # between LoRAs in the `loras` setting (LATENTMAP_LORAS)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(/.+)?$")


class OwnModelError(ValueError):
    """A user's model file or space file that cannot be used; the message names the file and why."""


@dataclass(frozen=True)
class LoraChoice:
    source: str  # local .safetensors file, or a hub id ("owner/repo" or "owner/repo/path/file.safetensors")
    strength: float = 1.0  # default strength (the slider starts there)
    name: str | None = None  # variant name (default: from the file name)


@dataclass(frozen=True)
class ModelChoice:
    base: str | None = None
    checkpoint: str | None = None
    loras: tuple[LoraChoice, ...] = field(default_factory=tuple)

    @property
    def empty(self) -> bool:
        return not (self.base or self.checkpoint or self.loras)


# ---------------------------------------------------------------------------------------------- options
_NAMED = re.compile(r"^([a-z0-9][a-z0-9_.-]{0,47})=(.+)$")


def parse_lora(text: str) -> LoraChoice:
    """`[NAME=]FILE[:STRENGTH]`: the strength after the last colon when it is a number; NAME (the variant's
    name, default from the file name) before an `=`."""
    text = text.strip()
    name = None
    named = _NAMED.match(text)
    if named:
        name, text = named.group(1), named.group(2)
    head, sep, tail = text.rpartition(":")
    if sep and head:
        try:
            return LoraChoice(head, float(tail), name)
        except ValueError:
            pass
    return LoraChoice(text, 1.0, name)


def format_loras(loras) -> str:
    return LORA_SEPARATOR.join(
        f"{lora.name + '=' if lora.name else ''}{lora.source}:{lora.strength:g}" for lora in loras
    )


def choice_from_settings(settings) -> ModelChoice:
    loras = tuple(parse_lora(t) for t in settings.loras.split(LORA_SEPARATOR) if t.strip()) if settings.loras else ()
    return ModelChoice(base=settings.base or None, checkpoint=settings.checkpoint or None, loras=loras)


def is_space_file(name: str) -> bool:
    return Path(name).suffix.lower() in SPACE_FILE_SUFFIXES and Path(name).is_file()


def read_space_file(path: str | Path) -> tuple[str, ModelChoice, list[LoraChoice]]:
    """A space file (TOML or JSON), relative paths taken from its folder:

        space = "turbo-h"                      # the space it builds on (required)
        base = "/models/my-sd15-diffusers"     # optional: hub id or diffusers folder
        checkpoint = "dreamshaper_8.safetensors"  # optional: single-file checkpoint
        [[loras]]
        file = "loras/pixel-art.safetensors"   # or a hub id
        strength = 0.8                         # default strength (optional, 1.0)
        name = "pixel-art"                     # optional variant name

    Returns (space name, base/checkpoint choice, LoRAs)."""
    import tomllib

    path = Path(path)
    try:
        data = tomllib.loads(path.read_text()) if path.suffix.lower() == ".toml" else json.loads(path.read_text())
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise OwnModelError(f"space file {path}: {e}") from None
    if not isinstance(data, dict):
        raise OwnModelError(f"space file {path}: expected a table / JSON object at the top")
    unknown = set(data) - {"space", "base", "checkpoint", "loras", "description"}
    if unknown:
        raise OwnModelError(
            f"space file {path}: unknown keys {', '.join(sorted(unknown))} (known: space, base, "
            "checkpoint, loras, description)"
        )
    space = data.get("space")
    if not isinstance(space, str) or not space:
        raise OwnModelError(f'space file {path}: `space` (e.g. "turbo-h") is required')

    def local(value: str | None, what: str) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise OwnModelError(f"space file {path}: `{what}` must be a non-empty string")
        candidate = (path.parent / value).expanduser()
        if not Path(value).is_absolute() and (candidate.exists() or not _HUB_ID.match(value)):
            return str(candidate)
        return value

    loras = []
    for i, entry in enumerate(data.get("loras") or []):
        if isinstance(entry, str):
            entry = {"file": entry}
        if not isinstance(entry, dict) or "file" not in entry:
            raise OwnModelError(f"space file {path}: loras[{i}] needs a `file`")
        extra = set(entry) - {"file", "strength", "name"}
        if extra:
            raise OwnModelError(f"space file {path}: loras[{i}] has unknown keys {', '.join(sorted(extra))}")
        strength = entry.get("strength", 1.0)
        if not isinstance(strength, (int, float)) or isinstance(strength, bool):
            raise OwnModelError(f"space file {path}: loras[{i}].strength must be a number")
        loras.append(LoraChoice(local(entry["file"], f"loras[{i}].file"), float(strength), entry.get("name")))
    choice = ModelChoice(base=local(data.get("base"), "base"), checkpoint=local(data.get("checkpoint"), "checkpoint"))
    return space, choice, loras


def apply_space_file(settings, path: str | Path):
    """Settings for the space a space file describes; options given on the command line win over the file's,
    and its LoRAs come first, then the command line's."""
    space, choice, loras = read_space_file(path)
    if is_space_file(space):
        raise OwnModelError(f"space file {path}: `space` must name a space, not another space file")
    combined = format_loras(loras) + (LORA_SEPARATOR + settings.loras if settings.loras and loras else settings.loras)
    return settings.with_(
        space=space,
        base=settings.base or choice.base or "",
        checkpoint=settings.checkpoint or choice.checkpoint or "",
        loras=combined,
    )


def resolve_file(source: str, what: str) -> Path:
    """A local .safetensors file, or a hub id already in the Hugging Face cache (never downloaded)."""
    path = Path(source).expanduser()
    try:
        model_files.refuse_unsafe(path)
    except ModelFileError as e:
        raise OwnModelError(str(e)) from None
    if path.is_file():
        return path
    if path.is_dir():
        files = sorted(path.glob("*.safetensors"))
        if len(files) == 1:
            return files[0]
        raise OwnModelError(f"{what} {source}: a folder with {len(files)} .safetensors files; name the file")
    if not _HUB_ID.match(source) or source.startswith((".", "/", "~")):
        raise OwnModelError(f"{what} {source}: no such file")
    from huggingface_hub import hf_hub_download, snapshot_download

    parts = source.split("/")
    repo, filename = "/".join(parts[:2]), "/".join(parts[2:]) or None
    try:
        if filename:
            return Path(hf_hub_download(repo, filename, local_files_only=True))
        folder = Path(snapshot_download(repo, allow_patterns=["*.safetensors"], local_files_only=True))
    except Exception:  # noqa: BLE001 - LocalEntryNotFoundError, gated or malformed ids: all mean "not here"
        raise OwnModelError(
            f"{what} {source}: not a local file, and not in the Hugging Face cache (latentmap never downloads "
            f"while loading); fetch it first, e.g. `huggingface-cli download {repo}"
            f"{' ' + filename if filename else ''}`"
        ) from None
    files = sorted(folder.rglob("*.safetensors"))
    if len(files) != 1:
        raise OwnModelError(
            f"{what} {source}: the cached repo has {len(files)} .safetensors files; name one as "
            f"{repo}/<path/in/repo.safetensors>"
        )
    return files[0]


def variant_name(path: Path, taken: set[str]) -> str:
    """A variant name from a file name (lower case, [a-z0-9_.-], at most 48 characters), unique."""
    stem = re.sub(r"[^a-z0-9_.-]+", "-", path.stem.lower()).strip("-._") or "lora"
    stem = stem[:40]
    if stem[0] not in "abcdefghijklmnopqrstuvwxyz0123456789":
        stem = "lora-" + stem
    name, i = stem, 2
    while name in taken or name == "base":
        name, i = f"{stem}-{i}", i + 1
    return name


# ---------------------------------------------------------------------------------------------- checks
def precheck(settings) -> None:
    """Header-only checks of every file the settings name (space file, checkpoint, LoRAs), so that `latentmap
    serve` refuses a wrong file at once with one line, before the server starts loading models."""
    from .registry import resolve_name, space_settings

    settings = space_settings(settings)
    choice = choice_from_settings(settings)
    name = resolve_name(settings.space)
    if (choice.checkpoint or choice.base) and name not in SPACE_FAMILY:
        raise OwnModelError(
            f"--base/--checkpoint replace the base weights of {', '.join(SPACE_FAMILY)}; space "
            f"'{name}' has its own decoder (LoRAs load with --lora)"
        )
    if choice.checkpoint:
        path = resolve_file(choice.checkpoint, "checkpoint")
        if name in SPACE_FAMILY:
            check_file(path, name, "checkpoint", settings.max_model_header_bytes, hashes=False)
    for lora in choice.loras:
        path = resolve_file(lora.source, "LoRA")
        if name in SPACE_FAMILY:
            check_file(path, name, "lora", settings.max_model_header_bytes, hashes=False)


def check_file(path: Path, space: str, kind: str, max_header_bytes: int, hashes: bool = True) -> dict:
    """Inspect `path` (header, then its sha256) and refuse it unless it is a `kind` of the space's family."""
    try:
        row = model_files.inspect(path, hashes=hashes, max_header_bytes=max_header_bytes)
    except ModelFileError as e:
        raise OwnModelError(str(e)) from None
    want = SPACE_FAMILY[space]
    what = {"checkpoint": "checkpoint", "lora": "LoRA"}[kind]
    if row["kind"] != kind:
        raise OwnModelError(
            f"{path.name} is a {row['kind_name']} file, not a {what} (`latentmap inspect {path}` says more)"
        )
    if row["family"] not in (want, UNKNOWN):
        raise OwnModelError(
            f"{path.name} is a {what} made for {row['family']} ({_evidence(row)}); {space} is built on {want}"
        )
    return row


def _evidence(row: dict) -> str:
    if row["family_from"] == "key shapes":
        return f"from its key shapes: {row['family_evidence']}"
    return "as its metadata states"


def family_of_folder(folder: Path) -> str:
    """The family of a diffusers pipeline folder, from its UNet config."""
    cfg_file = Path(folder) / "unet" / "config.json"
    if not cfg_file.is_file():
        return UNKNOWN
    cfg = json.loads(cfg_file.read_text())
    if cfg.get("addition_embed_type") == "text_time":
        return model_files.SDXL
    cross = cfg.get("cross_attention_dim")
    return model_files.CROSS_ATTENTION_DIM.get(cross if isinstance(cross, int) else -1, UNKNOWN)


def check_base_folder(folder: Path, space: str) -> None:
    family = family_of_folder(folder)
    if family not in (SPACE_FAMILY[space], UNKNOWN):
        raise OwnModelError(f"base {folder} is a {family} pipeline; {space} is built on {SPACE_FAMILY[space]}")


def checkpoint_fits_config(tensors: dict, config_dir: Path) -> str | None:
    """Why the checkpoint's UNet / text encoder shapes do not fit `config_dir`'s configs (None: they fit)."""
    unet = json.loads((Path(config_dir) / "unet" / "config.json").read_text())
    checks = [
        ("model.diffusion_model.input_blocks.0.0.weight", 0, unet["block_out_channels"][0], "UNet width"),
        (
            "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight",
            1,
            unet.get("cross_attention_dim"),
            "cross-attention width",
        ),
        ("model.diffusion_model.input_blocks.0.0.weight", 1, unet.get("in_channels"), "latent channels"),
    ]
    levels = len(unet["block_out_channels"])
    for key, axis, want, what in checks:
        spec = tensors.get(key)
        if spec is None:
            return f"the checkpoint has no {key}"
        if spec["shape"][axis] != want:
            return f"{what} {spec['shape'][axis]}, the config's is {want}"
    if f"model.diffusion_model.output_blocks.{3 * levels - 1}.0.skip_connection.weight" not in tensors:
        return f"the checkpoint's UNet does not have the config's {levels} levels"
    te = Path(config_dir) / "text_encoder" / "config.json"
    emb = tensors.get("cond_stage_model.transformer.text_model.embeddings.token_embedding.weight")
    if te.is_file() and emb is not None and emb["shape"][1] != json.loads(te.read_text()).get("hidden_size"):
        return f"text encoder width {emb['shape'][1]}, the config's is {json.loads(te.read_text()).get('hidden_size')}"
    return None


def lora_misfits(pipe, state: dict[str, torch.Tensor]) -> tuple[list[str], int]:
    """(misfits, LoRA layers that fit) of a LoRA state dict (Kohya or diffusers/PEFT keys) against the pipeline's
    UNet and text encoder: each LoRA pair must name an existing layer and have its in/out widths."""
    from diffusers.utils import (
        convert_state_dict_to_diffusers,
        convert_state_dict_to_peft,
        convert_unet_state_dict_to_peft,
    )

    converted, _ = pipe.lora_state_dict(dict(state))
    parts = {"unet": {}, "text_encoder": {}}
    other = []
    for key, value in converted.items():
        prefix, _, rest = key.partition(".")
        (parts[prefix].__setitem__(rest, value) if prefix in parts else other.append(key))
    problems = [f"{k}: not a UNet or text-encoder layer" for k in other[:3]]
    fitted = 0
    for part, sub in parts.items():
        if not sub:
            continue
        model = getattr(pipe, part)
        if part == "unet":
            peft = convert_unet_state_dict_to_peft(sub)
        else:
            peft = convert_state_dict_to_peft(convert_state_dict_to_diffusers(sub))
            if not hasattr(model, "text_model"):
                peft = {k.removeprefix("text_model."): v for k, v in peft.items()}
        modules = dict(model.named_modules())
        for key, down in peft.items():
            if ".lora_A." not in key and not key.endswith(".lora_A.weight"):
                continue
            layer = key.split(".lora_A")[0]
            up = peft.get(key.replace("lora_A", "lora_B"))
            module = modules.get(layer)
            if module is None:
                problems.append(f"{part}.{layer}: no such layer")
                continue
            base = getattr(module, "base_layer", module)
            width_in = getattr(base, "in_features", getattr(base, "in_channels", None))
            width_out = getattr(base, "out_features", getattr(base, "out_channels", None))
            if down.shape[1] != width_in or (up is not None and up.shape[0] != width_out):
                problems.append(
                    f"{part}.{layer}: LoRA {down.shape[1]}->{up.shape[0] if up is not None else '?'}, "
                    f"the layer is {width_in}->{width_out}"
                )
            else:
                fitted += 1
    return problems, fitted


# ---------------------------------------------------------------------------------------------- lineage
def base_info(space: str, base_id: str, checkpoint_row: dict | None) -> dict:
    """The loaded base decoder: what `base_match` compares LoRAs against, and its lineage row."""
    if checkpoint_row is None:
        return {"name": base_id, "sha256": None, "legacy_hash": None}
    return {
        "name": checkpoint_row["lineage"].get("title") or checkpoint_row["name"],
        "sha256": checkpoint_row["sha256"],
        "legacy_hash": checkpoint_row["legacy_hash"],
    }


def base_lineage(space: str, base_id: str, checkpoint_row: dict | None, licence: str | None = None) -> dict:
    family = SPACE_FAMILY[space]
    if checkpoint_row is None:
        return {
            "kind": "base",
            "base_model": base_id,
            "fine_tune_of": None,
            "loras": [],
            "family": family,
            "licence": licence or "see the model card of " + base_id,
        }
    lin = checkpoint_row["lineage"]
    return {
        "kind": "base",
        "base_model": lin.get("title") or checkpoint_row["name"],
        "file": checkpoint_row["name"],
        "family": checkpoint_row["family"] if checkpoint_row["family"] != UNKNOWN else family,
        "fine_tune_of": lin.get("stated_base") or lin.get("merged_from"),
        "loras": [],
        "sha256": checkpoint_row["sha256"],
        "trigger_phrase": lin.get("trigger_phrase"),
        "licence": lin.get("licence") or "not declared in the file",
    }


def lora_lineage(space: str, row: dict, base: dict) -> dict:
    lin = row["lineage"]
    out = {
        "kind": "lora",
        "lora_of": base["name"],
        "file": row["name"],
        "family": row["family"] if row["family"] != UNKNOWN else f"{UNKNOWN} (fits {SPACE_FAMILY[space]})",
        "stated_base": lin.get("stated_base"),
        "stated_base_sha256": lin.get("stated_base_sha256"),
        "stated_base_legacy_hash": lin.get("stated_base_legacy_hash"),
        "trigger_phrase": lin.get("trigger_phrase"),
        "title": lin.get("title"),
        "sha256": row["sha256"],
        "rank": row.get("rank"),
        "network_dim": lin.get("network_dim"),
        "network_alpha": lin.get("network_alpha"),
        "licence": lin.get("licence") or "not declared in the file",
    }
    out.update(model_files.base_match(lin, base))
    return {k: v for k, v in out.items() if v is not None or k == "made_for_this_base"}


def decoder_tag(*parts: str | None) -> str:
    """A short identity of the weights behind a decode (for cache keys): '' for the space's default weights."""
    parts = [p for p in parts if p]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16] if parts else ""


# ---------------------------------------------------------------------------------------------- loading LoRAs
def load_loras(space, loras, max_header_bytes: int) -> list[dict]:
    """Load each LoRA onto `space` (a VitHSpace with a variant_set) as a decoder variant; returns their rows."""
    from safetensors.torch import load_file

    rows = []
    for choice in loras:
        path = resolve_file(choice.source, "LoRA")
        row = check_file(path, space.name, "lora", max_header_bytes)
        state = load_file(str(path))
        problems, fitted = lora_misfits(space.pipe, state)
        if problems or not fitted:
            detail = "; ".join(problems[:3]) + (f" (and {len(problems) - 3} more)" if len(problems) > 3 else "")
            raise OwnModelError(
                f"LoRA {path.name} (made for {row['family']}) does not fit {space.name}'s "
                f"{SPACE_FAMILY[space.name]} decoder: {detail or 'no layer it could apply to'}"
            )
        taken = set(space.variant_set.variants)
        name = choice.name or variant_name(path, taken)
        lineage = lora_lineage(space.name, row, space.base)
        meta = {
            "kind": "lora",
            "base": space.name,
            "default_scale": choice.strength,
            "lineage": lineage,
            "description": row["lineage"].get("title") or path.name,
            "licence": lineage["licence"],
            "file_sha256": row["sha256"],
        }
        try:
            space.variant_set.load_lora(path, name, scale=choice.strength, meta=meta, state=state)
        except ValueError as e:
            raise OwnModelError(f"LoRA {path.name}: {e}") from None
        rows.append({"name": name, **lineage})
    return rows


# ---------------------------------------------------------------------------------------------- random builds
def kohya_lora_state_dict(
    unet, text_encoder=None, rank: int = 4, seed: int = 0, scale: float = 0.3
) -> dict[str, torch.Tensor]:
    """A LoRA in Kohya's sd-scripts layout for SD 1.x/2.x (what CivitAI distributes): `lora_unet_<module>` over
    every Linear / 1x1 conv of the UNet's transformer blocks (proj_in/out, attention, feed-forward) and
    `lora_te_<module>` over the text encoder's attention and MLP, each with lora_down / lora_up / alpha."""
    g = torch.Generator().manual_seed(seed)
    sd = {}

    def add(key: str, module) -> None:
        if isinstance(module, torch.nn.Conv2d):
            sd[f"{key}.lora_down.weight"] = torch.randn(rank, module.in_channels, 1, 1, generator=g) * scale
            sd[f"{key}.lora_up.weight"] = torch.randn(module.out_channels, rank, 1, 1, generator=g) * scale
        else:
            sd[f"{key}.lora_down.weight"] = torch.randn(rank, module.in_features, generator=g) * scale
            sd[f"{key}.lora_up.weight"] = torch.randn(module.out_features, rank, generator=g) * scale
        sd[f"{key}.alpha"] = torch.tensor(float(rank) / 2)

    for name, module in unet.named_modules():
        if (
            ".attentions." not in name
            or "transformer_blocks" not in name
            and not name.endswith(("proj_in", "proj_out"))
        ):
            continue
        if isinstance(module, torch.nn.Linear) or (
            isinstance(module, torch.nn.Conv2d) and module.kernel_size == (1, 1)
        ):
            add("lora_unet_" + name.replace(".", "_"), module)
    if text_encoder is not None:
        for name, module in text_encoder.named_modules():
            if isinstance(module, torch.nn.Linear) and name.endswith(
                ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")
            ):
                name = name if name.startswith("text_model.") else f"text_model.{name}"
                add("lora_te_" + name.replace(".", "_"), module)
    return sd


def peft_lora_file(
    unet, path: Path, rank: int = 4, seed: int = 0, metadata: dict | None = None, scale: float = 1.0
) -> Path:
    """A UNet LoRA in the diffusers/PEFT layout (`save_lora_weights`: "unet.<module>.lora_A/B.weight" plus the
    adapter config in the header), random non-zero weights over the attention projections."""
    import copy

    from diffusers import StableDiffusionPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    model = copy.deepcopy(unet)
    torch.manual_seed(seed)
    config = LoraConfig(
        r=rank, lora_alpha=rank, init_lora_weights=False, target_modules=["to_q", "to_k", "to_v", "to_out.0"]
    )
    model.add_adapter(config)
    layers = {k: v * scale if "lora_B" in k else v for k, v in get_peft_model_state_dict(model).items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    StableDiffusionPipeline.save_lora_weights(
        path.parent, unet_lora_layers=layers, weight_name=path.name, unet_lora_adapter_metadata=config.to_dict()
    )
    if metadata:  # add the training tool's keys beside diffusers' adapter config
        with safe_open(str(path), "pt") as f:
            existing = f.metadata() or {}
        save_file(load_file(str(path)), str(path), metadata={**existing, **metadata})
    return path

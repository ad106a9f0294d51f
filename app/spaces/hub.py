"""Which model weights the real spaces use, in one place, and how they get onto this machine.

Every component has a Hugging Face repo id and a revision. Both can be overridden by environment:

    LATENTMAP_<COMPONENT ENV>_ID        a hub repo id *or a local directory* with the same layout
    LATENTMAP_<COMPONENT ENV>_REVISION  a branch, tag or commit (ignored for local directories)

(`<COMPONENT ENV>` is the `env` field below, e.g. `LATENTMAP_UNCLIP_H_PIPELINE_ID`, `LATENTMAP_CLIP_H_ID`.)

Loading never downloads: spaces resolve components with `local_files_only=True`, so a server start cannot
silently pull gigabytes. `latentmap download SPACE` (see `download_space`) fetches exactly the files a
space needs (safetensors, json, txt; never pickles) into the Hugging Face cache (`HF_HOME`/`HF_HUB_CACHE`).
When something is missing, `MissingWeightsError` names the component, the files and the command to run.

Safetensors only: local directories holding pickle weights (.bin/.ckpt/...) are refused
(`loading.check_safetensors_only`), downloads only ever fetch `*.safetensors`, and every diffusers load
passes `use_safetensors=True`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from .loading import check_safetensors_only


class MissingWeightsError(RuntimeError):
    """A component's files are not on this machine (and we are not allowed to download at load time)."""

    def __init__(self, message: str, short: str | None = None):
        super().__init__(message)
        self.short = short or message


def _subfolders(*names: str) -> tuple[str, ...]:
    pats = ["model_index.json"]
    for n in names:
        pats += [f"{n}/*.json", f"{n}/*.txt", f"{n}/*.safetensors"]
    return tuple(pats)


# Variant / training-time files we never need (the fp32 `*.safetensors` are cast to fp16 on CUDA).
_IGNORE = (
    "*.fp16.*",
    "*non_ema*",
    "*.ema.*",
    "*.bin",
    "*.ckpt",
    "*.pt",
    "*.pth",
    "*.msgpack",
    "*.onnx*",
    "*.pb",
    "*.h5",
)


@dataclass(frozen=True)
class Component:
    key: str  # name inside its space ("clip", "pipeline", ...)
    env: str  # environment prefix after LATENTMAP_
    repo_id: str
    revision: str
    allow_patterns: tuple[str, ...]
    required: tuple[str, ...]  # globs that must match at least one file once downloaded
    description: str
    optional: bool = False  # the space works without it (e.g. TAESD previews fall back to the full VAE)

    def current(self) -> Component:
        """This component with the environment overrides applied."""
        return replace(
            self,
            repo_id=os.environ.get(f"LATENTMAP_{self.env}_ID", self.repo_id),
            revision=os.environ.get(f"LATENTMAP_{self.env}_REVISION", self.revision),
        )

    @property
    def is_local(self) -> bool:
        return _looks_local(self.repo_id)


def _looks_local(ident: str) -> bool:
    return ident.startswith(("/", "./", "../", "~")) or Path(ident).expanduser().is_dir()


# Revisions: "main" until someone with hub access pins commit hashes (set *_REVISION to pin one today).
CLIP_H = Component(
    "clip",
    "CLIP_H",
    "laion/CLIP-ViT-H-14-laion2B-s32B-b79K",
    "main",
    ("open_clip_config.json", "open_clip_model.safetensors"),
    ("open_clip_model.safetensors",),
    "open_clip ViT-H-14 / laion2b_s32b_b79k (1024-d): text and image encoder shared by every real space",
)
TAESD = Component(
    "taesd",
    "TAESD",
    "madebyollin/taesd",
    "main",
    ("config.json", "*.safetensors"),
    ("config.json", "*.safetensors"),
    "TAESD (AutoencoderTiny): fast latent decoder for SD 1.x/2.x latents",
)

SPACE_COMPONENTS: dict[str, dict[str, Component]] = {
    "unclip-h": {
        "clip": CLIP_H,
        # image_encoder/ and feature_extractor/ are not fetched: the shared open_clip ViT-H replaces them.
        "pipeline": Component(
            "pipeline",
            "UNCLIP_H_PIPELINE",
            "stabilityai/stable-diffusion-2-1-unclip",
            "main",
            _subfolders(
                "unet", "vae", "text_encoder", "tokenizer", "scheduler", "image_normalizer", "image_noising_scheduler"
            ),
            (
                "model_index.json",
                "unet/*.safetensors",
                "vae/*.safetensors",
                "text_encoder/*.safetensors",
                "tokenizer/*.json",
                "scheduler/*.json",
                "image_normalizer/*.safetensors",
                "image_noising_scheduler/*.json",
            ),
            "Stable unCLIP 2.1 (H): StableUnCLIPImg2ImgPipeline conditioned on ViT-H image embeddings",
        ),
        "taesd": replace(TAESD, optional=True),
    },
    "turbo-h": {
        "clip": CLIP_H,
        # vae/ is not fetched: decoding uses TAESD; safety_checker/ is not used.
        "sd15": Component(
            "sd15",
            "TURBO_H_SD15",
            "stable-diffusion-v1-5/stable-diffusion-v1-5",
            "main",
            _subfolders("unet", "text_encoder", "tokenizer", "scheduler"),
            (
                "model_index.json",
                "unet/*.safetensors",
                "text_encoder/*.safetensors",
                "tokenizer/*.json",
                "scheduler/*.json",
            ),
            "Stable Diffusion 1.5 (UNet, text encoder, tokenizer, scheduler)",
        ),
        "ip_adapter": Component(
            "ip_adapter",
            "TURBO_H_IP_ADAPTER",
            "h94/IP-Adapter",
            "main",
            ("models/ip-adapter_sd15.safetensors",),
            ("models/ip-adapter_sd15.safetensors",),
            "IP-Adapter for SD 1.5 (ViT-H image embeddings)",
        ),
        "lcm_lora": Component(
            "lcm_lora",
            "TURBO_H_LCM_LORA",
            "latent-consistency/lcm-lora-sdv1-5",
            "main",
            ("pytorch_lora_weights.safetensors",),
            ("pytorch_lora_weights.safetensors",),
            "LCM-LoRA for SD 1.5 (4-step sampling at guidance 1)",
        ),
        "taesd": TAESD,
    },
}

IP_ADAPTER_WEIGHT = "models/ip-adapter_sd15.safetensors"
LCM_LORA_WEIGHT = "pytorch_lora_weights.safetensors"


# The component a user's `--base` (hub id or diffusers folder) replaces, and a `--checkpoint` makes optional.
BASE_COMPONENT = {"unclip-h": "pipeline", "turbo-h": "sd15"}


def components(space: str, base: str | None = None, checkpoint: bool = False) -> dict[str, Component]:
    """`space`'s components with environment overrides; `base` replaces the base pipeline's repo (a hub id or a
    local folder); with `checkpoint` the base folder only supplies configs, so it becomes optional."""
    if space not in SPACE_COMPONENTS:
        raise ValueError(f"unknown real space '{space}': choose one of {', '.join(SPACE_COMPONENTS)}")
    out = {k: c.current() for k, c in SPACE_COMPONENTS[space].items()}
    key = BASE_COMPONENT[space]
    if base:
        out[key] = replace(out[key], repo_id=base, revision="main")
    if checkpoint and space == "turbo-h":  # SD 1.5's configs ship with the package (configs/sd15)
        out[key] = replace(out[key], optional=True)
    return out


def download_command(space: str) -> str:
    return f"latentmap download {space}"


def _missing_files(path: Path, comp: Component) -> list[str]:
    return [pattern for pattern in comp.required if not any(path.glob(pattern))]


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def locate(space: str, comp: Component) -> Path:
    """The local folder holding `comp`, without any network access. Raises MissingWeightsError."""
    if comp.is_local:
        path = Path(comp.repo_id).expanduser()
        if not path.is_dir():
            raise MissingWeightsError(
                f"{space}: {comp.key} points at {path}, which is not a directory (LATENTMAP_{comp.env}_ID); give an "
                f"existing folder, or unset it and run `{download_command(space)}`",
                short=f"{comp.key}: {path} is not a directory",
            )
        check_safetensors_only(path)
        missing = _missing_files(path, comp)
        if missing:
            raise MissingWeightsError(
                f"{space}: {comp.key} directory {path} lacks {', '.join(missing)} "
                "(safetensors weights and json configs in the hub's folder layout)"
            )
        return path
    from huggingface_hub import snapshot_download
    from huggingface_hub.constants import HF_HUB_CACHE

    try:
        path = Path(
            snapshot_download(
                comp.repo_id, revision=comp.revision, allow_patterns=list(comp.allow_patterns), local_files_only=True
            )
        )
    except Exception:  # LocalEntryNotFoundError and friends: nothing cached for this repo/revision
        raise MissingWeightsError(
            f"{space}: {comp.key} ({comp.repo_id}@{comp.revision}) is not in the Hugging Face cache "
            f"({HF_HUB_CACHE}); run `{download_command(space)}` on a machine with internet access (it fills "
            f"HF_HOME), or set LATENTMAP_{comp.env}_ID to a local directory",
            short=f"{comp.key} ({comp.repo_id}@{comp.revision}) not in the cache",
        ) from None
    missing = _missing_files(path, comp)
    if missing:
        raise MissingWeightsError(
            f"{space}: {comp.key} ({comp.repo_id}@{comp.revision}) is only partly in the cache at {path}: missing "
            f"{', '.join(missing)}; run `{download_command(space)}`",
            short=f"{comp.key} ({comp.repo_id}@{comp.revision}) lacks {', '.join(missing)}",
        )
    return path


def resolve(space: str, base: str | None = None, checkpoint: bool = False) -> dict[str, Path | None]:
    """Local folders for every component of `space` (None for a missing optional one)."""
    out: dict[str, Path | None] = {}
    for key, comp in components(space, base, checkpoint).items():
        try:
            out[key] = locate(space, comp)
        except MissingWeightsError:
            if not comp.optional:
                raise
            out[key] = None
    return out


def provenance(space: str, paths: dict, base: str | None = None) -> dict:
    """What each component was loaded from: `repo@revision (folder)` or the local folder."""
    out = {}
    for key, comp in components(space, base).items():
        path = paths.get(key)
        if path is None:
            out[key] = None
        elif comp.is_local:
            out[key] = str(path)
        else:
            out[key] = f"{comp.repo_id}@{comp.revision} ({Path(path).name})"
    return out


def missing(space: str, base: str | None = None, checkpoint: bool = False) -> list[str]:
    """Short human-readable problems that keep `space` from loading here ([] = all required weights present)."""
    problems = []
    for comp in components(space, base, checkpoint).values():
        if comp.optional:
            continue
        try:
            locate(space, comp)
        except MissingWeightsError as e:
            problems.append(e.short)
        except ValueError as e:  # e.g. a local override folder holding pickle weights
            problems.append(str(e))
    return problems


def download_space(space: str, progress: bool = True) -> dict[str, Path]:
    """Fetch every component `space` needs into the Hugging Face cache (local directories are just checked)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.utils import disable_progress_bars, enable_progress_bars

    (enable_progress_bars if progress else disable_progress_bars)()
    if _offline():
        raise RuntimeError("HF_HUB_OFFLINE is set: `latentmap download` needs the network (unset HF_HUB_OFFLINE)")
    done: dict[str, Path] = {}
    for key, comp in components(space).items():
        if comp.is_local:
            done[key] = locate(space, comp)
            continue
        print(f"{space}: {key} <- {comp.repo_id}@{comp.revision}", flush=True)
        path = Path(
            snapshot_download(
                comp.repo_id,
                revision=comp.revision,
                allow_patterns=list(comp.allow_patterns),
                ignore_patterns=list(_IGNORE),
            )
        )
        missing_files = _missing_files(path, comp)
        if missing_files and not comp.optional:
            raise RuntimeError(
                f"{comp.repo_id}@{comp.revision} has no {', '.join(missing_files)} "
                "(safetensors only: latentmap does not load pickle weights)"
            )
        done[key] = path
    return done

"""The one CLIP every real space shares: open_clip ViT-H-14 / laion2b_s32b_b79k (1024-d).

unCLIP-H and IP-Adapter SD1.5 were both trained on this encoder's (unnormalised) image embeddings, so a map
vector means the same thing to both decoders and maps built with either are comparable. One instance per
(folder, device) is kept per process, so loading both spaces does not hold ViT-H twice.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .base import DecodeRequest, EncodedImages, EncodedPrompts, ModalityStats, PreparedImage, Space, unit

log = logging.getLogger(__name__)

_INSTANCES: dict[tuple[str, str], VitH] = {}
_INSTANCES_LOCK = threading.Lock()


class VitH:
    def __init__(self, path: str | Path, device: str):
        import open_clip

        path = Path(path)
        self.path = path
        self.device = device
        self.dtype = torch.float16 if device.startswith("cuda") else torch.float32
        precision = "fp16" if self.dtype == torch.float16 else "fp32"
        config_file = path / "open_clip_config.json"
        has_model_cfg = config_file.is_file() and "model_cfg" in json.loads(config_file.read_text())
        if has_model_cfg:
            name = f"local-dir:{path}"
            model, _, preprocess = open_clip.create_model_and_transforms(
                name, device=device, precision=precision, require_pretrained=True
            )
            tokenizer = open_clip.get_tokenizer(name)
            self.model_name = f"local-dir:{path}"
        else:  # a folder holding only the weights file: the built-in ViT-H-14 architecture
            weights = path / "open_clip_model.safetensors"
            model, _, preprocess = open_clip.create_model_and_transforms(
                "ViT-H-14", pretrained=str(weights), device=device, precision=precision, require_pretrained=True
            )
            tokenizer = open_clip.get_tokenizer("ViT-H-14")
            self.model_name = "ViT-H-14"
        self.model = model.eval()
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.dim = int(model.text_projection.shape[1])
        self.lock = threading.Lock()

    @classmethod
    def shared(cls, path: str | Path, device: str) -> VitH:
        key = (str(Path(path).resolve()), device)
        with _INSTANCES_LOCK:
            if key not in _INSTANCES:
                _INSTANCES[key] = cls(path, device)
            return _INSTANCES[key]

    @torch.inference_mode()
    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        tokens = self.tokenizer(list(texts)).to(self.device)
        with self.lock:
            out = self.model.encode_text(tokens, normalize=False)
        return out.float().cpu().numpy()

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        return self.encode_prepared(torch.stack([self.preprocess(im.convert("RGB")) for im in images]))

    @torch.inference_mode()
    def encode_prepared(self, batch: torch.Tensor) -> np.ndarray:
        """(n, dim) raw image embeddings of a batch already through `preprocess`."""
        with self.lock:
            out = self.model.encode_image(batch.to(self.device, self.dtype), normalize=False)
        return out.float().cpu().numpy()


# ---------------------------------------------------------------------------------------------- shared space base
CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def space_config(name: str) -> dict:
    """configs/<name>.json, with keys overridden by the JSON file named in LATENTMAP_<NAME>_CONFIG (if set)."""
    import os

    config = json.loads((CONFIG_DIR / f"{name}.json").read_text())
    override = os.environ.get(f"LATENTMAP_{name.upper().replace('-', '_')}_CONFIG")
    if override:
        config.update(json.loads(Path(override).read_text()))
    return config


def reference_prompts(count: int | None = None) -> list[str]:
    lines = [ln.strip() for ln in (CONFIG_DIR / "reference_prompts.txt").read_text().splitlines() if ln.strip()]
    return lines[:count] if count else lines


def torch_dtype(device: str) -> torch.dtype:
    """fp16 on CUDA, fp32 on CPU (fp16/bf16 on CPU is far slower or hangs)."""
    return torch.float16 if device.startswith("cuda") else torch.float32


def dtype_kwargs(dtype: torch.dtype) -> dict:
    """`dtype=` for diffusers that know it (0.36+ deprecates `torch_dtype=`), else `torch_dtype=`."""
    from diffusers.utils import deprecation_utils

    return {"dtype": dtype} if hasattr(deprecation_utils, "_resolve_dtype") else {"torch_dtype": dtype}


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """(n, 3, h, w) in [-1, 1] → PIL RGB images."""
    arr = ((images.float() / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)
    return [Image.fromarray(a) for a in arr]


def _prepare(preprocess, height: int, width: int, image: Image.Image) -> PreparedImage:
    return PreparedImage(clip=preprocess(image.convert("RGB")), vae=to_vae_batch([image], height, width)[0])


def to_vae_batch(images: Sequence[Image.Image], height: int, width: int) -> torch.Tensor:
    """PIL images → (n, 3, h, w) in [-1, 1], resized (centre-cropped to the aspect ratio) to the decoder's size."""
    out = []
    for im in images:
        im = im.convert("RGB")
        scale = max(width / im.width, height / im.height)
        im = im.resize(
            (max(width, round(im.width * scale)), max(height, round(im.height * scale))), Image.Resampling.BICUBIC
        )
        left, top = (im.width - width) // 2, (im.height - height) // 2
        im = im.crop((left, top, left + width, top + height))
        out.append(torch.from_numpy(np.asarray(im, dtype=np.float32).transpose(2, 0, 1) / 127.5 - 1.0))
    return torch.stack(out)


class VitHSpace(Space):
    """What unclip-h and turbo-h share: the ViT-H encoder, prompt images, cached modality statistics, one lock.

    Subclasses set `pipe` (its `vae` encodes latents) and implement `_generate(texts)` (text-to-image for prompt
    thumbnails) and `_decode_one(request)`.
    """

    generates_prompt_images = True

    def __init__(self, name: str, clip: VitH, config: dict, device: str, provenance: dict):
        self.name = name
        self.clip = clip
        self.config = config
        self.device = device
        self.dtype = torch_dtype(device)
        self.dim = clip.dim
        self.provenance = provenance
        self.info = {
            "family": config.get("family"),
            "encoder": "open_clip ViT-H-14 laion2b_s32b_b79k",
            "decode": {k: config[k] for k in ("height", "width", "steps", "guidance") if k in config},
            "preview": config.get("preview"),
            "provenance": provenance,
        }
        self._lock = threading.Lock()  # diffusers schedulers hold state: one pipeline call at a time
        # Decoder variants (the user's LoRAs, own_models.py) and what the base decoder is (lineage, hashes).
        self.variant_set = None
        self.base = {"name": name, "sha256": None, "legacy_hash": None}
        self._decoder_tag = ""  # '' for the default weights: old decode cache keys stay valid

    # ---------------------------------------------------------------- own models (own_models.py)
    def set_base(self, base: dict, lineage: dict, tag: str) -> None:
        """Record what the base decoder is (a checkpoint file, another base folder) and make LoRAs loadable."""
        from .variants import VariantSet

        self.base, self._decoder_tag = base, tag
        self.info["lineage"] = lineage
        self.variant_set = VariantSet(self.pipe, self.name, "RGB", lineage)
        self.info["variants"] = []

    def load_loras(self, loras, max_header_bytes: int) -> list[dict]:
        """Each LoRA (own_models.LoraChoice) as a decoder variant beside the base."""
        from . import own_models

        with self._lock:
            rows = own_models.load_loras(self, loras, max_header_bytes)
            self.info["variants"] = self.variant_set.describe()
        return rows

    def variants(self) -> list[dict]:
        return self.variant_set.describe() if self.variant_set is not None else []

    def resolve_variant(self, variant, lora_scale, max_scale: float = 2.0):
        if self.variant_set is None:
            return super().resolve_variant(variant, lora_scale, max_scale)
        return self.variant_set.resolve(variant, lora_scale, max_scale)

    def decoder_identity(self, variant: str | None) -> str:
        from .own_models import decoder_tag

        if variant is None or self.variant_set is None:
            return self._decoder_tag
        found = self.variant_set.variants.get(variant)
        return decoder_tag(self._decoder_tag, found.meta.get("file_sha256") if found else variant)

    def _variant(self, variant: str | None, lora_scale: float | None):
        """Context: the pipeline with `variant`'s LoRA on (call under self._lock)."""
        from contextlib import nullcontext

        if variant is None or self.variant_set is None:
            return nullcontext(self.pipe)
        return self.variant_set.pipeline_for(variant, lora_scale)

    # ---------------------------------------------------------------- encoding
    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        return self.clip.encode_text(texts)

    def prepare_image(self, image: Image.Image) -> PreparedImage:
        return self.image_preparer()(image)

    def image_preparer(self):
        return functools.partial(_prepare, self.clip.preprocess, int(self.config["height"]), int(self.config["width"]))

    def encode_prepared(self, prepared: Sequence[PreparedImage]) -> EncodedImages:
        return EncodedImages(
            vectors=self.clip.encode_prepared(torch.stack([p.clip for p in prepared])),
            latents=self._latents(torch.stack([p.vae for p in prepared])),
        )

    def encode_prompts(self, texts: Sequence[str]) -> EncodedPrompts:
        """Text vector for the map position; a generated image per prompt for the thumbnail and for decoding
        (its CLIP *image* embedding sits on the decoder's side of the modality gap)."""
        vectors = self.encode_text(texts)
        images, encoded = self.prompt_images(texts)
        return EncodedPrompts(vectors=vectors, decode_vectors=encoded.vectors, images=images, latents=encoded.latents)

    def prompt_images(self, texts: Sequence[str]) -> tuple[list[Image.Image], EncodedImages]:
        images = self._generate(list(texts))
        return images, self.encode_images(images)

    def decode(self, requests: Sequence[DecodeRequest]) -> list[Image.Image]:
        out = []
        for r in requests:
            if np.asarray(r.vector).shape != (self.dim,):
                raise ValueError(f"decode vector must have shape ({self.dim},), got {np.asarray(r.vector).shape}")
            out.append(self._decode_one(r))
        return out

    def _generate(self, texts: list[str]) -> list[Image.Image]:
        raise NotImplementedError

    @torch.inference_mode()
    def _latents(self, batch: torch.Tensor) -> np.ndarray:
        """Latents of a (n, 3, h, w) batch in [-1, 1] at the decoder's size, from the pipeline's own autoencoder
        (unclip-h: AutoencoderKL, its distribution's mean; turbo-h: TAESD, AutoencoderTiny), 8 images a call."""
        vae = self.pipe.vae
        out = []
        with self._lock:
            for i in range(0, len(batch), 8):
                encoded = vae.encode(batch[i : i + 8].to(self.device, self.dtype))
                z = encoded.latent_dist.mean if hasattr(encoded, "latent_dist") else encoded.latents
                out.append((z * vae.config.scaling_factor).float().cpu())
        return torch.cat(out).numpy()

    def _decode_one(self, req: DecodeRequest) -> Image.Image:
        raise NotImplementedError

    # ---------------------------------------------------------------- modality statistics
    def load_stats(self, cache_dir: Path | None, fingerprint: dict, prompts: Sequence[str]) -> ModalityStats:
        """ModalityStats measured on this space itself: the shipped reference prompts (configs/
        reference_prompts.txt) give the text side; the images this space generates from them, encoded by
        ViT-H, give the image side. Computed once, then cached (safetensors) under `cache_dir`, keyed by the
        weights' ids/revisions, the settings and the prompts."""
        from safetensors.numpy import load_file, save_file

        key = hashlib.sha256(
            json.dumps({**fingerprint, "prompts": list(prompts)}, sort_keys=True, default=str).encode()
        ).hexdigest()[:16]
        path = None if cache_dir is None else Path(cache_dir) / f"stats-{key}.safetensors"
        if path is not None and path.is_file():
            raw = load_file(str(path))
            self.info["stats"] = {"source": "cache", "file": str(path), "reference_prompts": len(prompts)}
            return ModalityStats(
                text_mean=raw["text_mean"], image_mean=raw["image_mean"], image_norm=float(raw["image_norm"][0])
            )
        log.info(
            "%s: measuring modality statistics on %d reference prompts (first start only)", self.name, len(prompts)
        )
        encoded = self.encode_prompts(prompts)
        stats = ModalityStats(
            text_mean=unit(encoded.vectors).mean(0).astype(np.float32),
            image_mean=unit(encoded.decode_vectors).mean(0).astype(np.float32),
            image_norm=float(np.linalg.norm(encoded.decode_vectors, axis=1).mean()),
        )
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            save_file(
                {
                    "text_mean": stats.text_mean,
                    "image_mean": stats.image_mean,
                    "image_norm": np.array([stats.image_norm], dtype=np.float32),
                },
                str(path),
            )
        self.info["stats"] = {
            "source": "computed",
            "file": str(path) if path else None,
            "reference_prompts": len(prompts),
        }
        return stats


def fingerprint(space: str, paths: dict, config: dict) -> dict:
    """What cached statistics depend on: the settings and each component's folder (a hub snapshot folder names
    its commit; a local folder is identified by its path and modification time)."""
    comps = {}
    for key, path in paths.items():
        comps[key] = None if path is None else [str(Path(path).resolve()), Path(path).stat().st_mtime_ns]
    return {"space": space, "config": config, "components": comps}


# ---------------------------------------------------------------------------------------------- random builds
def build_clip_dir(dest: Path, spec: dict, seed: int = 0) -> Path:
    """An open_clip `local-dir:` folder (open_clip_config.json + open_clip_model.safetensors), random weights."""
    import open_clip
    from safetensors.torch import save_file

    dest.mkdir(parents=True, exist_ok=True)
    if "name" in spec:
        model_cfg = open_clip.get_model_config(spec["name"])
        preprocess_cfg = {
            "size": model_cfg["vision_cfg"]["image_size"],
            "mean": list(open_clip.OPENAI_DATASET_MEAN),
            "std": list(open_clip.OPENAI_DATASET_STD),
            "interpolation": "bicubic",
            "resize_mode": "shortest",
        }
    else:
        model_cfg, preprocess_cfg = spec["model_cfg"], spec["preprocess_cfg"]
    (dest / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg}))
    torch.manual_seed(seed)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # open_clip warns that the weights are random: here that is the point
    try:
        model = open_clip.create_model(f"local-dir:{dest}", load_weights=False)
    finally:
        root.setLevel(level)
    save_file(
        {k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(dest / "open_clip_model.safetensors")
    )
    return dest


def clip_tokenizer(dest: Path | None = None):
    """The CLIP BPE tokenizer rebuilt from open_clip's bundled vocabulary (no download)."""
    import gzip

    from open_clip.tokenizer import bytes_to_unicode, default_bpe
    from transformers import CLIPTokenizer

    merges = gzip.open(default_bpe()).read().decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
    merges = [tuple(m.split()) for m in merges]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab] + ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    # transformers 5: vocab=/merges= (the v4 vocab_file= keywords are silently ignored).
    tok = CLIPTokenizer(vocab={t: i for i, t in enumerate(vocab)}, merges=merges, model_max_length=77)
    if dest is not None:
        tok.save_pretrained(dest)
    return tok

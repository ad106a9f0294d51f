"""What a downloaded model file is, read from its safetensors header alone (fast on multi-GB files).

A safetensors file starts with 8 bytes (little-endian header length) and a JSON header: every tensor's dtype,
shape and byte range, plus an optional `__metadata__` of strings. From the tensor names and shapes we tell the
*kind* (full checkpoint, LoRA/LyCORIS, VAE, embedding) and the architecture *family* (SD 1.x, SD 2.x, SDXL);
from the metadata the *lineage* that training tools write: Kohya's `ss_*` keys and SAI ModelSpec's
`modelspec.*` keys. Pickle formats (.ckpt/.pt/.bin/...) are refused without being opened: loading them can run
arbitrary code.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

from .loading import PICKLE_SUFFIXES

SD1, SD2, SDXL, OTHER, UNKNOWN = "SD 1.x", "SD 2.x", "SDXL", "other", "unknown"
KIND_NAMES = {
    "checkpoint": "full checkpoint",
    "lora": "LoRA/LyCORIS",
    "vae": "VAE",
    "embedding": "embedding",
    "unknown": "unknown",
}
# Cross-attention width (the text encoder's hidden size the UNet reads) of each family.
CROSS_ATTENTION_DIM = {768: SD1, 1024: SD2, 2048: SDXL}
DEFAULT_MAX_HEADER_BYTES = 100 * 1024 * 1024  # the safetensors library's own limit


class ModelFileError(ValueError):
    """A file latentmap will not read (pickle, not safetensors, broken header); the message is for the user."""


def refuse_unsafe(path: Path) -> None:
    """Refuse pickle formats by name, before any byte is read."""
    suffix = Path(path).suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        raise ModelFileError(
            f"{path}: {suffix} files are Python pickles; loading one can run any code its author put in it, so "
            "latentmap never opens them. Use the .safetensors version of this model (most model pages offer one), "
            "or convert it on a machine you trust and load the .safetensors file."
        )


def read_header(path: str | Path, max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES) -> tuple[dict, dict, int]:
    """(tensors {name: {"dtype", "shape"}}, metadata {str: str}, header length) of a safetensors file, reading
    only its first 8 + header-length bytes."""
    path = Path(path)
    refuse_unsafe(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such file")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ModelFileError(f"{path}: not a safetensors file (only {size} bytes)")
        (length,) = struct.unpack("<Q", head)
        if length < 2 or length > max_header_bytes or 8 + length > size:
            raise ModelFileError(
                f"{path}: not a safetensors file (its first 8 bytes do not give a plausible header "
                f"length: {length} of a {size}-byte file)"
            )
        raw = f.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ModelFileError(f"{path}: not a safetensors file (the header is not JSON)") from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{path}: not a safetensors file (the header is not a JSON object)")
    metadata = header.pop("__metadata__", None) or {}
    tensors = {}
    for name, spec in header.items():
        if not isinstance(spec, dict) or "shape" not in spec or "dtype" not in spec:
            raise ModelFileError(f"{path}: not a safetensors file (entry {name!r} has no dtype/shape)")
        tensors[name] = {"dtype": spec["dtype"], "shape": [int(s) for s in spec["shape"]]}
    return tensors, {str(k): str(v) for k, v in metadata.items()}, length


def file_hashes(path: str | Path, header_length: int) -> dict:
    """sha256 of the whole file; sha256 of the bytes after the header (what Kohya writes as
    `modelspec.hash_sha256`); the old 8-hex A1111 "model hash" (Kohya's `ss_sd_model_hash`)."""
    whole, tensors = hashlib.sha256(), hashlib.sha256()
    legacy = hashlib.sha256()
    offset = 0
    start = 8 + header_length
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(8 << 20), b""):
            whole.update(chunk)
            end = offset + len(chunk)
            if end > start:
                tensors.update(chunk[max(0, start - offset) :])
            lo, hi = max(offset, 0x100000), min(end, 0x110000)
            if hi > lo:
                legacy.update(chunk[lo - offset : hi - offset])
            offset = end
    return {"sha256": whole.hexdigest(), "tensor_sha256": tensors.hexdigest(), "legacy_hash": legacy.hexdigest()[:8]}


# ---------------------------------------------------------------------------------------------- kind
_LORA_MARKS = ("lora_down", "lora_up", "lora_A", "lora_B", "lora.down", "lora.up", "lora_linear_layer")
_LYCORIS_MARKS = {
    "hada_w1_a": "LoHa",
    "lokr_w1": "LoKr",
    "oft_blocks": "OFT",
    "oft_diag": "OFT",
    ".diff": "full diff",
    "on_input": "IA3",
    "weight_decompose": "DoRA",
}


def detect_kind(tensors: dict) -> tuple[str, str | None]:
    """(kind, subtype) from tensor names: checkpoint / lora / vae / embedding / unknown."""
    keys = list(tensors)
    if any(m in k for k in keys for m in _LORA_MARKS):
        dora = any("dora_scale" in k or "lora_magnitude_vector" in k for k in keys)
        return "lora", "DoRA" if dora else "LoRA"
    for mark, sub in _LYCORIS_MARKS.items():
        if any(mark in k for k in keys) and any(k.startswith(("lora_unet_", "lora_te")) for k in keys):
            return "lora", f"LyCORIS {sub}"
    if any(k.startswith("model.diffusion_model.") for k in keys):
        return "checkpoint", None
    stripped = [k.removeprefix("first_stage_model.").removeprefix("vae.") for k in keys]
    if any(k.startswith("decoder.") for k in stripped) and any("quant_conv" in k for k in stripped):
        return "vae", None
    if keys and (set(keys) <= {"emb_params", "clip_l", "clip_g"} or all(k.startswith("string_to_param") for k in keys)):
        return "embedding", None
    return "unknown", None


# ---------------------------------------------------------------------------------------------- family
def _family_from_metadata(meta: dict) -> str | None:
    version = meta.get("ss_base_model_version", "").lower()
    arch = meta.get("modelspec.architecture", "").lower().removesuffix("/lora").removesuffix("/lycoris")
    for text in (arch, version):
        if not text:
            continue
        if "xl" in text:
            return SDXL
        if text.startswith(("sd_v1", "stable-diffusion-v1")):
            return SD1
        if text.startswith(("sd_v2", "stable-diffusion-v2")):
            return SD2
        return OTHER
    return None


def _shape(tensors: dict, key: str) -> list[int] | None:
    spec = tensors.get(key)
    return spec["shape"] if spec else None


def _checkpoint_family(tensors: dict) -> tuple[str, str]:
    keys = tensors.keys()
    if any(k.startswith("conditioner.embedders.") for k in keys):
        return SDXL, "SDXL conditioner (OpenCLIP ViT-bigG text encoder) keys"
    if any(k.startswith(("model.diffusion_model.joint_blocks.", "model.diffusion_model.double_blocks.")) for k in keys):
        return OTHER, "a transformer (MMDiT) denoiser, not an SD UNet"
    if any(k.startswith("cond_stage_model.model.") for k in keys):
        return SD2, "OpenCLIP ViT-H text encoder (cond_stage_model.model.*)"
    if any(k.startswith("cond_stage_model.transformer.") for k in keys):
        return SD1, "CLIP ViT-L text encoder (cond_stage_model.transformer.*)"
    to_k = _shape(tensors, "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight")
    if to_k and to_k[1] in CROSS_ATTENTION_DIM:
        return CROSS_ATTENTION_DIM[to_k[1]], f"cross-attention width {to_k[1]}"
    proj = _shape(tensors, "model.diffusion_model.input_blocks.1.1.proj_in.weight")
    if proj:
        return (SD1, "convolutional proj_in") if len(proj) == 4 else (UNKNOWN, "")
    return UNKNOWN, ""


def _lora_family(tensors: dict) -> tuple[str, str]:
    keys = list(tensors)
    if any(k.startswith(("lora_te1_", "lora_te2_", "text_encoder_2.", "te2.")) for k in keys):
        return SDXL, "two text encoders (lora_te1/lora_te2)"
    if any(
        k.startswith(("lora_unet_input_blocks_", "lora_unet_output_blocks_", "lora_unet_middle_block_")) for k in keys
    ):
        return SDXL, "SDXL block names (lora_unet_input_blocks_*)"
    if any("transformer_blocks_1_" in k or "transformer_blocks.1." in k for k in keys):
        return SDXL, "more than one transformer block per attention (SDXL)"
    for key in keys:  # cross-attention key projection: its input width is the text encoder's
        if ("attn2_to_k" in key or "attn2.to_k" in key or "attn2.processor.to_k" in key) and any(
            m in key for m in ("lora_down", "lora_A", "lora.down")
        ):
            width = tensors[key]["shape"][1]
            if width in CROSS_ATTENTION_DIM:
                return CROSS_ATTENTION_DIM[width], f"cross-attention width {width}"
    for key in keys:
        if (
            "proj_in" in key
            and any(m in key for m in ("lora_down", "lora_A", "lora.down"))
            and len(tensors[key]["shape"]) == 4
        ):
            return SD1, "convolutional proj_in (SD 1.x; SD 2.x and SDXL use linear ones)"
    for key in keys:  # text encoder width: SD 1.x ViT-L 768, SD 2.x ViT-H 1024
        if (
            key.startswith(("lora_te_", "text_encoder."))
            and "q_proj" in key
            and any(m in key for m in ("lora_down", "lora_A", "lora.down"))
        ):
            width = tensors[key]["shape"][1]
            if width == 768:
                return SD1, "text encoder width 768 (CLIP ViT-L)"
            if width == 1024:
                return SD2, "text encoder width 1024 (OpenCLIP ViT-H)"
    return UNKNOWN, ""


def _vae_family(tensors: dict) -> tuple[str, str]:
    # SD 1.x and 2.x share one VAE latent space (4 channels); SDXL's VAE has the same shapes (another scale).
    for key, spec in tensors.items():
        if key.removeprefix("first_stage_model.") in ("quant_conv.weight",):
            return (
                (f"{SD1} / {SD2} / {SDXL} (4-channel latents)", "4-channel latent")
                if spec["shape"][0] == 8
                else (OTHER, f"{spec['shape'][0] // 2}-channel latents")
            )
    return UNKNOWN, ""


def _embedding_family(tensors: dict) -> tuple[str, str]:
    if "clip_g" in tensors:
        return SDXL, "clip_l + clip_g vectors"
    for spec in tensors.values():
        width = spec["shape"][-1]
        if width == 768:
            return SD1, "768-d token vectors (CLIP ViT-L)"
        if width == 1024:
            return SD2, "1024-d token vectors (OpenCLIP ViT-H)"
    return UNKNOWN, ""


def detect_family(tensors: dict, kind: str, metadata: dict) -> dict:
    """{"family", "from", "evidence", "stated"}: the family the key shapes show (they win), else the one the
    metadata states; `conflict` when both speak and disagree."""
    by_kind = {
        "checkpoint": _checkpoint_family,
        "lora": _lora_family,
        "vae": _vae_family,
        "embedding": _embedding_family,
    }
    shapes, evidence = by_kind.get(kind, lambda t: (UNKNOWN, ""))(tensors)
    stated = _family_from_metadata(metadata)
    out = {"family": shapes, "from": "key shapes", "evidence": evidence or None, "stated": stated}
    if shapes == UNKNOWN and stated:
        out.update(family=stated, **{"from": "metadata"})
    elif shapes == UNKNOWN:
        out["from"] = None
    out["conflict"] = bool(stated and shapes not in (UNKNOWN, stated) and kind != "vae")
    return out


# ---------------------------------------------------------------------------------------------- lineage
LINEAGE_KEYS = {  # field: metadata keys, first present wins
    "title": ("modelspec.title", "ss_output_name"),
    "architecture": ("modelspec.architecture",),
    "base_model_version": ("ss_base_model_version",),
    "stated_base": ("ss_sd_model_name",),
    "stated_base_sha256": ("ss_new_sd_model_hash",),
    "stated_base_legacy_hash": ("ss_sd_model_hash",),
    "network_module": ("ss_network_module",),
    "network_dim": ("ss_network_dim",),
    "network_alpha": ("ss_network_alpha",),
    "trigger_phrase": ("modelspec.trigger_phrase",),
    "stated_sha256": ("modelspec.hash_sha256",),
    "merged_from": ("modelspec.merged_from",),
    "prediction_type": ("modelspec.prediction_type",),
    "resolution": ("modelspec.resolution",),
    "implementation": ("modelspec.implementation",),
    "author": ("modelspec.author",),
    "licence": ("modelspec.license",),
    "description": ("modelspec.description",),
}


def lineage_from_metadata(metadata: dict) -> dict:
    out = {}
    for field, keys in LINEAGE_KEYS.items():
        for key in keys:
            value = metadata.get(key, "").strip()
            if value and value.lower() not in ("none", "null"):
                out[field] = value
                break
    if "stated_sha256" in out:
        out["stated_sha256"] = out["stated_sha256"].lower().removeprefix("0x")
    return out


def _hash_matches(stated: str, full: str) -> bool:
    """A stated hash names a file when it is its sha256 or a prefix of at least 8 hex digits (CivitAI's AutoV2
    is the first 10)."""
    stated = stated.strip().lower().removeprefix("0x")
    return len(stated) >= 8 and full.lower().startswith(stated)


def inspect(path: str | Path, hashes: bool = True, max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES) -> dict:
    """Everything `latentmap inspect` prints. Kind and family come from the header alone; `hashes` reads the
    whole file once more for its sha256."""
    path = Path(path)
    tensors, metadata, header_length = read_header(path, max_header_bytes)
    kind, subtype = detect_kind(tensors)
    family = detect_family(tensors, kind, metadata)
    lineage = lineage_from_metadata(metadata)
    params = 0
    for spec in tensors.values():
        n = 1
        for s in spec["shape"]:
            n *= s
        params += n
    row = {
        "file": str(path),
        "name": path.name,
        "bytes": path.stat().st_size,
        "kind": kind,
        "kind_name": KIND_NAMES[kind] + (f" ({subtype})" if subtype and subtype != "LoRA" else ""),
        "family": family["family"],
        "family_from": family["from"],
        "family_evidence": family["evidence"],
        "stated_family": family["stated"],
        "family_conflict": family["conflict"],
        "tensors": len(tensors),
        "parameters": params,
        "dtypes": sorted({s["dtype"] for s in tensors.values()}),
        "lineage": lineage,
        "metadata_keys": sorted(metadata),
    }
    if kind == "lora":
        ranks = {s["shape"][0] for k, s in tensors.items() if any(m in k for m in ("lora_down", "lora_A", "lora.down"))}
        row["rank"] = max(ranks) if ranks else None
        row["parts"] = sorted({_lora_part(k) for k in tensors})
    if hashes:
        h = file_hashes(path, header_length)
        row.update(sha256=h["sha256"], tensor_sha256=h["tensor_sha256"], legacy_hash=h["legacy_hash"])
        if "stated_sha256" in lineage:
            row["stated_sha256_matches"] = any(
                _hash_matches(lineage["stated_sha256"], h[k]) for k in ("sha256", "tensor_sha256")
            )
    return row


def _lora_part(key: str) -> str:
    if key.startswith(("lora_te2_", "text_encoder_2.", "te2.")):
        return "text encoder 2"
    if key.startswith(("lora_te", "text_encoder.", "te.")):
        return "text encoder"
    return "unet"


def base_match(lineage: dict, base: dict) -> dict:
    """Whether a file was made for the loaded base, by hash where the file states one.

    `base`: the loaded base's {"name", "sha256", "legacy_hash"} (hashes None for a diffusers folder)."""
    stated_name = lineage.get("stated_base")
    new, legacy = lineage.get("stated_base_sha256"), lineage.get("stated_base_legacy_hash")
    if not new and not legacy:
        return {"made_for_this_base": None, "base_match": "not compared: the file states no base hash"}
    if not base.get("sha256"):
        return {
            "made_for_this_base": None,
            "base_match": f"not compared: the loaded base ({base.get('name')}) is a diffusers folder, which has "
            "no file hash" + (f"; the file states {stated_name}" if stated_name else ""),
        }
    same = (new and _hash_matches(new, base["sha256"])) or (
        legacy and base.get("legacy_hash") and legacy.strip().lower() == base["legacy_hash"]
    )
    if same:
        return {"made_for_this_base": True, "base_match": "made for this base"}
    return {"made_for_this_base": False, "base_match": f"made for another base: {stated_name or (new or legacy)[:12]}"}


def format_report(row: dict) -> str:
    """The human-readable `latentmap inspect` output."""
    lines = [
        (
            f"{row['name']}  ({row['bytes']:,} bytes, {row['tensors']} tensors, {row['parameters']:,} parameters, "
            f"{'/'.join(row['dtypes'])})"
        ),
        f"  kind:    {row['kind_name']}",
    ]
    fam = row["family"]
    if row["family_from"] == "key shapes":
        fam += f"  (from key shapes: {row['family_evidence']})"
    elif row["family_from"] == "metadata":
        fam += "  (from the metadata; the key shapes do not say)"
    lines.append(f"  family:  {fam}")
    if row["family_conflict"]:
        lines.append(f"  warning: the metadata says {row['stated_family']}, the key shapes say {row['family']}")
    if row.get("rank") is not None:
        lines.append(f"  rank:    {row['rank']}  (parts: {', '.join(row['parts'])})")
    if row.get("sha256"):
        lines.append(f"  sha256:  {row['sha256']}")
    lineage = row["lineage"]
    labels = {
        "title": "title",
        "architecture": "architecture",
        "base_model_version": "base version",
        "stated_base": "trained on",
        "stated_base_sha256": "base sha256",
        "stated_base_legacy_hash": "base hash",
        "network_module": "network",
        "network_dim": "dim",
        "network_alpha": "alpha",
        "trigger_phrase": "trigger",
        "stated_sha256": "own sha256",
        "merged_from": "merged from",
        "prediction_type": "prediction",
        "resolution": "resolution",
        "implementation": "implementation",
        "author": "author",
        "licence": "licence",
        "description": "description",
    }
    if lineage:
        lines.append("  lineage (from the file's metadata):")
        for key, label in labels.items():
            if key in lineage:
                extra = ""
                if key == "stated_sha256" and "stated_sha256_matches" in row:
                    extra = "  (matches this file)" if row["stated_sha256_matches"] else "  (does NOT match this file)"
                lines.append(f"    {label + ':':<16}{lineage[key]}{extra}")
    else:
        lines.append("  lineage: the file's metadata states none")
    return "\n".join(lines)

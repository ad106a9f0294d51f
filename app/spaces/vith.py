"""The one CLIP every real space shares: open_clip ViT-H-14 / laion2b_s32b_b79k (1024-d).

unCLIP-H and IP-Adapter SD1.5 were both trained on this encoder's (unnormalised) image embeddings, so a map
vector means the same thing to both decoders and maps built with either are comparable. One instance per
(folder, device) is kept per process, so loading both spaces does not hold ViT-H twice.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

log = logging.getLogger(__name__)

_INSTANCES: dict[tuple[str, str], "VitH"] = {}
_INSTANCES_LOCK = threading.Lock()


class VitH:
    def __init__(self, path: str | Path, device: str):
        import open_clip

        path = Path(path)
        self.path = path
        self.device = device
        self.dtype = torch.float16 if device.startswith("cuda") else torch.float32
        precision = "fp16" if self.dtype == torch.float16 else "fp32"
        if (path / "open_clip_config.json").is_file():
            name = f"local-dir:{path}"
            model, _, preprocess = open_clip.create_model_and_transforms(
                name, device=device, precision=precision, require_pretrained=True)
            tokenizer = open_clip.get_tokenizer(name)
            self.model_name = json.loads((path / "open_clip_config.json").read_text()).get("model_cfg", {})
        else:  # a folder holding only the weights file: the built-in ViT-H-14 architecture
            weights = path / "open_clip_model.safetensors"
            model, _, preprocess = open_clip.create_model_and_transforms(
                "ViT-H-14", pretrained=str(weights), device=device, precision=precision, require_pretrained=True)
            tokenizer = open_clip.get_tokenizer("ViT-H-14")
            self.model_name = "ViT-H-14"
        self.model = model.eval()
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.dim = int(model.text_projection.shape[1])
        self.lock = threading.Lock()

    @classmethod
    def shared(cls, path: str | Path, device: str) -> "VitH":
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

    @torch.inference_mode()
    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        batch = torch.stack([self.preprocess(im.convert("RGB")) for im in images]).to(self.device, self.dtype)
        with self.lock:
            out = self.model.encode_image(batch, normalize=False)
        return out.float().cpu().numpy()

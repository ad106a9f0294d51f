"""ClipDecoderPipeline: a diffusers pipeline that turns a CLIP image embedding into pixels.

The UNet is conditioned the way Kandinsky 2.2's decoder is (`addition_embed_type="image"`,
`encoder_hid_dim_type="image_proj"`): the embedding enters both the time embedding and the cross-attention
tokens. Classifier-free guidance uses a zero embedding as the negative, which is what conditioning dropout
trains. An optional starting latent turns the call into image-to-image (SDEdit-style `strength`).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from diffusers import AutoencoderKL, DiffusionPipeline, ImagePipelineOutput, UNet2DConditionModel
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image


class ClipDecoderPipeline(DiffusionPipeline):
    model_cpu_offload_seq = "unet->vae"

    def __init__(self, unet: UNet2DConditionModel, scheduler, vae: AutoencoderKL):
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler, vae=vae)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        size = self.unet.config.sample_size
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        return (self.unet.config.in_channels, h, w)

    @torch.inference_mode()
    def __call__(
        self,
        image_embeds: torch.Tensor,
        num_inference_steps: int = 20,
        guidance_scale: float = 2.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        init_latents: torch.Tensor | None = None,
        strength: float = 1.0,
        output_type: str = "pil",
    ) -> ImagePipelineOutput:
        return list(
            self.steps(
                image_embeds, num_inference_steps, guidance_scale, generator, init_latents, strength, output_type
            )
        )[-1]

    def steps(
        self,
        image_embeds: torch.Tensor,
        num_inference_steps: int = 20,
        guidance_scale: float = 2.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        init_latents: torch.Tensor | None = None,
        strength: float = 1.0,
        output_type: str = "pil",
    ):
        """The call as a generator: None after each denoising step, the ImagePipelineOutput last. Between steps
        the caller may run other work on this pipeline (a click between the steps of a terrain tile): this
        call keeps its own copy of the scheduler, and holds no lock across a yield. One generator per
        request in `generator` (a list) gives each row the noise it would get decoded alone."""
        if image_embeds.ndim != 2:
            raise ValueError(f"image_embeds must be (batch, dim), got shape {tuple(image_embeds.shape)}")
        if not 0.0 < strength <= 1.0:
            raise ValueError(f"strength must be in (0, 1], got {strength}")
        with torch.inference_mode():
            device, dtype = self._execution_device, self.unet.dtype
            batch = image_embeds.shape[0]
            image_embeds = image_embeds.to(device=device, dtype=dtype)
            do_cfg = guidance_scale > 1.0
            cond = torch.cat([torch.zeros_like(image_embeds), image_embeds]) if do_cfg else image_embeds

            scheduler = copy.deepcopy(self.scheduler)
            scheduler.set_timesteps(num_inference_steps, device=device)
            timesteps = scheduler.timesteps
            noise = randn_tensor((batch, *self.latent_shape), generator=generator, device=device, dtype=dtype)
            if init_latents is not None and strength < 1.0:
                skip = num_inference_steps - max(1, int(round(num_inference_steps * strength)))
                timesteps = timesteps[skip:]
                init = init_latents.to(device=device, dtype=dtype)
                latents = scheduler.add_noise(init, noise, timesteps[:1].repeat(batch))
            else:
                latents = noise * scheduler.init_noise_sigma
        for t in timesteps:
            with torch.inference_mode():
                model_in = torch.cat([latents] * 2) if do_cfg else latents
                model_in = scheduler.scale_model_input(model_in, t)
                pred = self.unet(
                    model_in, t, encoder_hidden_states=None, added_cond_kwargs={"image_embeds": cond}
                ).sample
                if do_cfg:
                    uncond, text = pred.chunk(2)
                    pred = uncond + guidance_scale * (text - uncond)
                latents = scheduler.step(pred, t, latents).prev_sample
            yield None

        with torch.inference_mode():
            images = self.vae.decode(latents / self.vae.config.scaling_factor).sample
            images = (images / 2 + 0.5).clamp(0, 1).float().cpu()
        if output_type == "pt":
            yield ImagePipelineOutput(images=images)
            return
        arrays = (images.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
        pil = [Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a) for a in arrays]
        yield ImagePipelineOutput(images=pil)

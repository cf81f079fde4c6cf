"""Counted FLOPs of one step, for model FLOPs utilisation (MFU).

Conventions (the same as the usual transformer accounting, e.g. Kaplan et al. 2020 and the PaLM
paper's appendix B):

* A matrix product of an ``(t, n_in)`` input with an ``(n_in, n_out)`` weight costs
  ``2 * t * n_in * n_out`` FLOPs (one multiply and one add per multiply-accumulate); biases,
  norms, activations, softmax and rotary embeddings are not counted (under 1%).
* Attention of ``q`` queries over ``k`` keys with total head width ``w`` (heads x head
  dimension) costs ``4 * q * k * w``: ``Q K^T`` and ``softmax(.) V``. Causal masking is not
  discounted (the whole square is counted, as PaLM does), and nothing is counted for the
  recomputation a fused attention kernel does in its backward pass.
* Counts follow the tensors the GPU really processes: padded text positions and the padded
  patch grid of the vision encoder (Idefics2 pads every image of a batch to the largest
  height and width), so MFU measures hardware use, not useful work.

A training step with a frozen base and LoRA adapters computes:

* the vision encoder forward only: no adapter sits in it and nothing upstream of an adapter
  needs its gradients, so autograd never enters it;
* the connector and the language model forward, plus the gradient of their inputs in the
  backward pass (about as many FLOPs again for every frozen matrix product: there is no weight
  gradient to compute) and twice the forward for attention (gradients of Q, K and V);
* the LoRA adapters forward, input gradient and weight gradient (3x their forward).

So ``training = vision + 2 * (connector_linear + text_linear) + 3 * (connector_attention +
text_attention) + 3 * lora``. The often-quoted ``3 x forward`` (which assumes every weight is
trained) is reported beside it as ``training_3x``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class FlopCount:
    """Forward FLOPs of one step, by part of the model.

    Attributes:
        vision_linear: Vision encoder matrix products, patch embedding included.
        vision_attention: Vision encoder attention.
        connector_linear: Connector (Idefics2: modality projection and perceiver resampler).
        connector_attention: Connector attention (the perceiver's latents over the patches).
        text_linear: Language model matrix products, ``lm_head`` included.
        text_attention: Language model attention.
        lora: LoRA adapters (``A`` and ``B`` of every adapted layer).
    """

    vision_linear: float = 0.0
    vision_attention: float = 0.0
    connector_linear: float = 0.0
    connector_attention: float = 0.0
    text_linear: float = 0.0
    text_attention: float = 0.0
    lora: float = 0.0

    @property
    def linear(self) -> float:
        """Every matrix product with a weight (what :func:`count_linear_flops` measures)."""
        return self.vision_linear + self.connector_linear + self.text_linear + self.lora

    @property
    def forward(self) -> float:
        """FLOPs of one forward pass."""
        return float(sum(getattr(self, f.name) for f in fields(self)))

    @property
    def training(self) -> float:
        """FLOPs of one training step with a frozen base and LoRA (see the module docstring)."""
        vision = self.vision_linear + self.vision_attention
        frozen = self.connector_linear + self.text_linear
        attention = self.connector_attention + self.text_attention
        return vision + 2 * frozen + 3 * attention + 3 * self.lora

    @property
    def training_3x(self) -> float:
        """The ``3 x forward`` convention, for comparison with published MFU figures."""
        return 3 * self.forward

    def to_dict(self) -> dict[str, float]:
        """Every part plus ``forward``, ``training`` and ``training_3x``."""
        return {
            **asdict(self),
            "forward": self.forward,
            "training": self.training,
            "training_3x": self.training_3x,
        }


def linear_flops(tokens: float, n_in: float, n_out: float) -> float:
    """``2 * tokens * n_in * n_out``: one matrix product with a weight."""
    return 2.0 * tokens * n_in * n_out


def attention_flops(queries: float, keys: float, width: float) -> float:
    """``4 * queries * keys * width``: ``Q K^T`` and the product with ``V``."""
    return 4.0 * queries * keys * width


def lora_flops(tokens: float, n_in: float, n_out: float, r: int) -> float:
    """Forward FLOPs of a rank-``r`` adapter on an ``n_in -> n_out`` layer."""
    return linear_flops(tokens, n_in, r) + linear_flops(tokens, r, n_out)


def idefics2_flops(
    config: Any,
    *,
    batch: int,
    seq_len: int,
    n_images: int,
    patches_per_image: int,
    lora_r: int = 0,
    logits_tokens: int | None = None,
) -> FlopCount:
    """Forward FLOPs of an Idefics2 model on one batch.

    Args:
        config: An ``Idefics2Config``.
        batch: Sequences in the batch.
        seq_len: Their (padded) length in tokens, image tokens included.
        n_images: Images in the batch (sub-images count one each when images are split).
        patches_per_image: Vision-encoder patches per image (the padded grid).
        lora_r: Rank of LoRA adapters on the paper's targets (every q/k/v/o/gate/up/down
            projection of the text model, the modality projection and the perceiver
            resampler); 0: no adapter.
        logits_tokens: Positions ``lm_head`` is applied to (default: all of them, as in
            training).

    Returns:
        The :class:`FlopCount`.
    """
    tc, vc, pc = config.text_config, config.vision_config, config.perceiver_config
    d, ff, vocab = tc.hidden_size, tc.intermediate_size, tc.vocab_size
    heads, kv = tc.num_attention_heads, tc.num_key_value_heads
    head_dim = getattr(tc, "head_dim", None) or d // heads
    q_w, kv_w = heads * head_dim, kv * head_dim
    tokens = batch * seq_len
    logits = tokens if logits_tokens is None else logits_tokens

    text_layer = [(d, q_w), (d, kv_w), (d, kv_w), (q_w, d), (d, ff), (d, ff), (ff, d)]
    text_linear = tc.num_hidden_layers * sum(linear_flops(tokens, a, b) for a, b in text_layer)
    text_linear += linear_flops(logits, d, vocab)
    text_attention = tc.num_hidden_layers * batch * attention_flops(seq_len, seq_len, q_w)

    dv, ffv, p = vc.hidden_size, vc.intermediate_size, vc.patch_size
    patches = n_images * patches_per_image
    vision_layer = [(dv, dv)] * 4 + [(dv, ffv), (ffv, dv)]
    vision_linear = linear_flops(patches, 3 * p * p, dv)
    vision_linear += vc.num_hidden_layers * sum(linear_flops(patches, a, b) for a, b in vision_layer)
    vision_attention = (
        vc.num_hidden_layers * n_images * attention_flops(patches_per_image, patches_per_image, dv)
    )

    n_lat = pc.resampler_n_latents
    pq_w = pc.resampler_n_heads * pc.resampler_head_dim
    pkv_w = pc.num_key_value_heads * pc.resampler_head_dim
    latents, context = n_images * n_lat, n_images * (patches_per_image + n_lat)
    projection = [(patches, dv, ff), (patches, dv, ff), (patches, ff, d)]
    perceiver_layer = [
        (latents, d, pq_w),
        (context, d, pkv_w),
        (context, d, pkv_w),
        (latents, pq_w, d),
        (latents, d, 4 * d),
        (latents, d, 4 * d),
        (latents, 4 * d, d),
    ]
    depth = pc.resampler_depth
    connector_linear = sum(linear_flops(t, a, b) for t, a, b in projection)
    connector_linear += depth * sum(linear_flops(t, a, b) for t, a, b in perceiver_layer)
    connector_attention = depth * n_images * attention_flops(n_lat, patches_per_image + n_lat, pq_w)

    lora = 0.0
    if lora_r:
        lora = tc.num_hidden_layers * sum(lora_flops(tokens, a, b, lora_r) for a, b in text_layer)
        lora += sum(lora_flops(t, a, b, lora_r) for t, a, b in projection)
        lora += depth * sum(lora_flops(t, a, b, lora_r) for t, a, b in perceiver_layer)
    return FlopCount(
        vision_linear=vision_linear,
        vision_attention=vision_attention,
        connector_linear=connector_linear,
        connector_attention=connector_attention,
        text_linear=text_linear,
        text_attention=text_attention,
        lora=lora,
    )


def count_linear_flops(model: Any, batch: dict[str, Any]) -> float:
    """Measure the matrix-product FLOPs of one forward pass with hooks (a check of the formula).

    Every ``torch.nn.Linear`` (bitsandbytes 4-bit layers and LoRA's ``A``/``B`` included)
    adds ``2 * tokens * in_features * out_features``; every ``Conv2d`` adds
    ``2 * output elements * in_channels * kernel area / groups``.
    """
    import torch

    total = [0.0]

    def on_linear(module: Any, args: tuple[Any, ...], output: Any) -> None:
        tokens = args[0].numel() // module.in_features
        total[0] += linear_flops(tokens, module.in_features, module.out_features)

    def on_conv(module: Any, args: tuple[Any, ...], output: Any) -> None:
        kh, kw = module.kernel_size
        total[0] += 2.0 * output.numel() * module.in_channels * kh * kw / module.groups

    handles = []
    for m in model.modules():
        if isinstance(m, torch.nn.Linear):
            handles.append(m.register_forward_hook(on_linear))
        elif isinstance(m, torch.nn.Conv2d):
            handles.append(m.register_forward_hook(on_conv))
    try:
        with torch.no_grad():
            model(**batch)
    finally:
        for h in handles:
            h.remove()
    return total[0]

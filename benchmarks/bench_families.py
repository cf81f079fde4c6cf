"""Per model family: training-collator throughput at the real checkpoint's image settings.

For every family, the tiny model's tokenizer and chat template are combined with the image
processor configured as the released checkpoint ships it (resolution, splitting, image tokens
per image), and the training collator prepares batches of 8 real VQA-RAD train questions
(../shared/data when present, else the bundled sample). The baseline, measured in the same
run, is one forward + backward pass of the family's tiny model on the same questions at tiny
image settings. The ratio (collator samples/s over tiny-step samples/s) shows how data
preparation cost differs between families before any GPU is rented; the collated length
(tokens per sample) is reported too, since it drives the real model's cost.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import best_of, emit, limit_torch_threads, run_timed, skip, vqa_rad_source, vqa_rad_train_batches

BATCH = 8
N_BATCHES = 2


def _real_processor(family: str, tiny: Any) -> tuple[Any, str]:
    """A processor with the tiny tokenizer and template but the released image settings."""
    tok, template = tiny.tokenizer, tiny.chat_template
    if family == "idefics2":
        from transformers import Idefics2Processor
        from transformers.models.idefics2.image_processing_pil_idefics2 import Idefics2ImageProcessorPil

        ip: Any = Idefics2ImageProcessorPil(
            size={"shortest_edge": 378, "longest_edge": 980}, do_image_splitting=False
        )
        return Idefics2Processor(
            ip, tok, image_seq_len=64, chat_template=template
        ), "idefics2-8b, no splitting"
    if family in ("idefics3", "smolvlm"):
        from transformers import Idefics3Processor
        from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

        split = family == "idefics3"  # the released preprocessors split; medvqa's default does not
        ip = Idefics3ImageProcessorPil(
            size={"longest_edge": 2048}, max_image_size={"longest_edge": 512}, do_image_splitting=split
        )
        what = (
            "SmolVLM-256M/500M, splitting on (released)" if split else "SmolVLM 512 px, no splitting (medvqa)"
        )
        return Idefics3Processor(ip, tok, image_seq_len=64, chat_template=template), what
    if family in ("qwen2_vl", "qwen2_5_vl"):
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

        from medvqa.models._tiny_families import image_only_qwen_processor_class

        ip = Qwen2VLImageProcessorPil(
            patch_size=14,
            merge_size=2,
            temporal_patch_size=2,
            size={"shortest_edge": 3136, "longest_edge": 12845056},
        )
        cls = image_only_qwen_processor_class()
        return cls(
            image_processor=ip, tokenizer=tok, chat_template=template
        ), "Qwen 7B-Instruct, native resolution"
    if family == "gemma3":
        from transformers import Gemma3Processor
        from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

        ip = Gemma3ImageProcessorPil(
            size={"height": 896, "width": 896}, image_mean=[0.5] * 3, image_std=[0.5] * 3
        )
        proc = Gemma3Processor(ip, tok, chat_template=template, image_seq_length=256)
        return proc, "gemma-3-4b-it, 896 px, 256 tokens"
    if family == "llava":
        from transformers import LlavaProcessor
        from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil

        ip = LlavaImageProcessorPil(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336})
        proc = LlavaProcessor(
            ip,
            tok,
            patch_size=14,
            vision_feature_select_strategy="default",
            num_additional_image_tokens=1,
            chat_template=template,
        )
        return proc, "llava-1.5-7b, 336 px, 576 tokens"
    from transformers import LlavaNextProcessor
    from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil

    ip = LlavaNextImageProcessorPil(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336})
    proc = LlavaNextProcessor(
        ip,
        tok,
        patch_size=14,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=template,
    )
    return proc, "llava-v1.6-mistral-7b, any-resolution tiles"


def main() -> int:
    try:
        import torch

        from medvqa.collate import TrainingCollator
        from medvqa.models import FAMILIES, tiny_model
    except ImportError as exc:
        skip(f"needs medvqa[train]: {exc}")
        return 0
    limit_torch_threads(torch)
    source = vqa_rad_source()
    batches = vqa_rad_train_batches(BATCH, N_BATCHES)
    n = sum(len(b) for b in batches)
    wanted = set(sys.argv[1:]) & set(FAMILIES) or set(FAMILIES)
    for family in sorted(wanted):
        model, tiny = tiny_model(family)
        real, settings = _real_processor(family, tiny)
        real.medvqa_family = family
        real_collator = TrainingCollator(real, mode="answer")
        collated_real = [real_collator(b) for b in batches]  # warm-up
        tokens = sum(int(b["attention_mask"].sum()) for b in collated_real) / n
        t_collate, _ = best_of(lambda c=real_collator: [c(b) for b in batches], repeat=2)
        collated = [TrainingCollator(tiny, mode="answer")(b) for b in batches]
        model.train()

        def steps(m: Any = model, cs: list[Any] = collated) -> None:
            for batch in cs:
                m(**batch).loss.backward()
                m.zero_grad(set_to_none=True)

        steps()
        t_step, _ = best_of(steps, repeat=2)
        emit(
            f"{family}: training collator at real image settings vs tiny model step",
            n / t_collate,
            "samples/s",
            baseline=n / t_step,
            ratio=t_step / t_collate,
            ratio_meaning="collator throughput at real settings / tiny-model step throughput",
            n=n,
            note=f"{settings}; {tokens:.0f} tokens per sample; batch {BATCH}; data: {source}",
        )
    return 0


if __name__ == "__main__":
    run_timed(main)

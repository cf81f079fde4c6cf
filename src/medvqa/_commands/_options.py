"""Every option of the ``medvqa`` commands, defined once: one name, one type, one default, one help.

Commands build their parsers with :func:`add_options`, naming the options they take; the
options land in argument groups (model, data, generation, scoring, output) so that
``--help`` shows them grouped. The spellings of earlier releases keep working for one
release through hidden aliases (:func:`add_deprecated`, defined in
:mod:`medvqa._commands._deprecated`), each printing one deprecation line on stderr.
``tests/unit/test_cli_vocabulary.py`` walks every parser and fails when one concept has two
spellings, defaults, types or help texts.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medvqa._commands._common import DATASET_NAMES, positive_int
from medvqa._commands._deprecated import (
    DEPRECATED_TRANSFORM_NAMES,
    OLD_DTYPES,
    add_deprecated,
    deprecation,
)

__all__ = [
    "DEPRECATED_TRANSFORM_NAMES",
    "GROUP_TITLES",
    "OPTIONS",
    "PER_COMMAND_HELP",
    "Option",
    "add_deprecated",
    "add_options",
    "deprecation",
    "dtype_name",
    "nonnegative_int",
    "profile_names",
    "transform_names",
]

GROUP_TITLES: Mapping[str, str] = {
    "model": "model options",
    "data": "data options",
    "generation": "generation options",
    "scoring": "scoring options",
    "training": "training options",
    "output": "output options",
}
"""Argument groups of ``--help``, in the order they are shown."""

PER_COMMAND_HELP: Mapping[str, str] = {
    "output": "what is written (a file or a folder) is the command's own",
    "format": "each command offers the formats it writes",
}
"""Options whose help text (and, for ``--format``, choices and default) each command words itself."""

_DTYPES = ("auto", "float32", "float16", "bfloat16")


def nonnegative_int(text: str) -> int:
    """The argparse type of counts where 0 means "none" (``--stage1-size 0`` skips stage 1,
    ``--n-boot 0`` computes no interval, ``--num-workers 0`` decodes in the main process).

    >>> nonnegative_int("0")
    0
    >>> nonnegative_int("-1")
    Traceback (most recent call last):
    argparse.ArgumentTypeError: must be a whole number of at least 0, got '-1'
    """
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 0, got {text!r}")
    return value


def dtype_name(text: str) -> str:
    """The argparse type of ``--dtype``: a torch dtype name; ``fp16``-style names are deprecated.

    >>> dtype_name("bfloat16")
    'bfloat16'
    """
    if text in OLD_DTYPES:
        deprecation(f"--dtype {text}", f"--dtype {OLD_DTYPES[text]}")
        return OLD_DTYPES[text]
    if text not in _DTYPES:
        raise argparse.ArgumentTypeError(f"invalid choice {text!r} (choose from {', '.join(_DTYPES)})")
    return text


def _split_names(values: str | Sequence[str]) -> list[str]:
    items = [values] if isinstance(values, str) else list(values)
    return [n.strip() for item in items for n in item.split(",") if n.strip()]


def profile_names(values: Sequence[str]) -> list[str]:
    """Profile names of ``--profile`` (one or more, comma-separated accepted; ``all``: every profile).

    Raises:
        argparse.ArgumentTypeError: An unknown name.

    >>> profile_names(["paper,strict", "strict"])
    ['paper', 'strict']
    """
    from medvqa.metrics import PROFILES

    names = _split_names(values)
    if "all" in names:
        return list(PROFILES)
    bad = [n for n in names if n not in PROFILES]
    if bad:
        raise argparse.ArgumentTypeError(
            f"unknown profile {bad[0]!r} (choose from {', '.join(PROFILES)}, all)"
        )
    return list(dict.fromkeys(names))


def transform_names(values: Sequence[str]) -> list[str]:
    """Transform names of ``--transform``: comma-separated accepted, former names renamed (with a notice).

    >>> transform_names(["swap,noimage+expert"])
    ['swap', 'noimage+expert']
    """
    out: list[str] = []
    for name in _split_names(values):
        parts = []
        for part in name.split("+"):
            new = DEPRECATED_TRANSFORM_NAMES.get(part.strip())
            if new is not None:
                deprecation(f"--transform {part.strip()}", f"--transform {new}")
            parts.append(new or part.strip())
        out.append("+".join(parts))
    return list(dict.fromkeys(out))


class _Names(argparse.Action):
    """``nargs='+'`` that accumulates over repeats, splits commas and checks the names."""

    def __init__(self, *args: Any, check: Callable[[Sequence[str]], list[str]], **kwargs: Any) -> None:
        self.check = check
        super().__init__(*args, **kwargs)

    def __call__(
        self, parser: argparse.ArgumentParser, ns: argparse.Namespace, values: Any, option: str | None = None
    ) -> None:
        try:
            names = self.check(values)
        except argparse.ArgumentTypeError as exc:
            parser.error(f"argument {option}: {exc}")
        before = getattr(ns, self.dest, None) or []
        setattr(ns, self.dest, list(dict.fromkeys([*before, *names])))


@dataclass(frozen=True)
class Option:
    """One command-line option: its flags, its group and the keywords of ``add_argument``."""

    flags: tuple[str, ...]
    group: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)


def _opt(group: str, *flags: str, **kwargs: Any) -> Option:
    return Option(flags=flags, group=group, kwargs=kwargs)


def _families() -> list[str]:
    from medvqa.models import FAMILIES

    return sorted(FAMILIES)


def _prompts() -> tuple[str, ...]:
    from medvqa.chat import PROMPTS

    return tuple(PROMPTS)


_MODEL: dict[str, Option] = {
    "model": _opt(
        "model",
        "--model",
        default=None,
        metavar="PATH|HUB_ID|tiny",
        help="base model: a folder written by save_pretrained (safetensors weights), a hub id such as "
        "HuggingFaceM4/idefics2-8b (needs network or the Hugging Face cache), or 'tiny' for the tiny "
        "random offline model; the training commands read it from the config when it is not given",
    ),
    "family": _opt(
        "model",
        "--family",
        default=None,
        metavar="NAME",
        help="model family ({families}); default: read from the checkpoint's config.json, idefics2 "
        "for --model tiny ('medvqa models' lists them)",
    ),
    "adapter": _opt(
        "model",
        "--adapter",
        type=Path,
        default=None,
        metavar="FOLDER",
        help="LoRA adapter folder (adapter_config.json + adapter_model.safetensors), for example the "
        "adapter/ folder of a training run; loaded in eval mode, so LoRA dropout is off",
    ),
    "quantization": _opt(
        "model",
        "--quantization",
        choices=("auto", "none", "nf4", "fp4", "int8"),
        default="auto",
        help="load the base model quantized with bitsandbytes (default: auto, nf4 on a CUDA machine - "
        "the paper's QLoRA base, lm_head kept in full precision - and none on a CPU); the compute "
        "dtype of quantized layers is --dtype. Run records hold the resolved value",
    ),
    "dtype": _opt(
        "model",
        "--dtype",
        type=dtype_name,
        default="auto",
        metavar="{auto,float32,float16,bfloat16}",
        help="dtype of the unquantized weights and compute dtype of quantized ones (default: auto, "
        "bfloat16 on GPUs that support it, float16 on other GPUs, float32 on a CPU)",
    ),
    "device_map": _opt(
        "model",
        "--device-map",
        default=None,
        metavar="MAP",
        help="device map passed to from_pretrained, e.g. auto or cpu (default: the whole model on this "
        "process's GPU on a CUDA machine, one per GPU under torchrun/accelerate; the CPU otherwise)",
    ),
    "as_run": _opt(
        "model",
        "--as-run",
        action="store_true",
        help="reproduce the paper's evaluation FLAWS on purpose: LoRA dropout active at inference "
        "(seeded by --dropout-seed), an adapter on a float16 base without quantization (the base "
        "model alone: nf4), batch size 1; replaces --quantization and --dtype. Not a fair comparison",
    ),
    "dropout_seed": _opt(
        "model",
        "--dropout-seed",
        type=int,
        default=None,
        metavar="N",
        help="seed of the dropout masks with --as-run (default: --seed)",
    ),
}

_DATA: dict[str, Option] = {
    "nonsense_data": _opt(
        "data",
        "--nonsense-data",
        type=Path,
        default=None,
        metavar="PATH",
        help="Med-HALT reasoning_fake.csv or its folder, the nonsense questions (default: the bundled sample)",
    ),
    "nonsense_split": _opt(
        "data",
        "--nonsense-split",
        default="train",
        help="Med-HALT split_type of the nonsense questions (default: train)",
    ),
    "dataset": _opt("data", "--dataset", choices=DATASET_NAMES, help="which dataset format --data is in"),
    "data": _opt(
        "data",
        "--data",
        default=None,
        metavar="PATH",
        help="release folder or file of the dataset (default: the sample bundled with medvqa, which "
        "exists for vqa_rad, slake, roco and med_halt; path_vqa needs --data)",
    ),
    "split": _opt(
        "data",
        "--split",
        default="test",
        help="split to answer: train, validation or test, as the dataset has them (default: test)",
    ),
    "limit": _opt(
        "data",
        "--limit",
        type=positive_int,
        default=None,
        metavar="N",
        help="use only the first N questions, in dataset order (the paper scored the first 400)",
    ),
    "eval_limit": _opt(
        "data",
        "--eval-limit",
        type=positive_int,
        default=None,
        metavar="N",
        help="score only the first N test questions, in dataset order (paper: 400)",
    ),
    "transform": _opt(
        "data",
        "--transform",
        action=_Names,
        check=transform_names,
        nargs="+",
        default=None,
        metavar="NAME",
        help="ablation transform(s) applied to the questions (seeded by --seed): swap, swap_index (the "
        "paper's rule), blank, noise, noimage, expert, expert_prepend, medevalkit; join names with '+' "
        "to compose them (noimage+expert); several may follow one --transform or be comma-separated",
    ),
}

_GENERATION: dict[str, Option] = {
    "prompt": _opt(
        "generation",
        "--prompt",
        default=None,
        metavar="NAME",
        help="built-in prompt: paper ('Answer briefly.', the default for VQA), expert (the paper's "
        "expert-radiologist instruction), caption (the default for caption data) or medevalkit",
    ),
    "instruction": _opt(
        "generation",
        "--instruction",
        default=None,
        metavar="TEXT",
        help="your own instruction in place of 'Answer briefly.' (layout: instruction, image, "
        "question; recorded as prompt 'custom'); not together with --prompt",
    ),
    "batch_size": _opt(
        "generation",
        "--batch-size",
        type=positive_int,
        default=None,
        metavar="N",
        help="questions per generate call (default: 8, 1 with --as-run; the paper used 1). Batch size 1 "
        "and 8 give identical answers on the tiny float32 model; in float16 on a GPU, padding can flip "
        "a rare near-tie",
    ),
    "max_new_tokens": _opt(
        "generation",
        "--max-new-tokens",
        type=positive_int,
        default=20,
        metavar="N",
        help="longest answer in tokens (default: 20, as the paper; it used 50 for nonsense questions)",
    ),
    "num_workers": _opt(
        "generation",
        "--num-workers",
        type=nonnegative_int,
        default=None,
        metavar="N",
        help="data-loader workers that decode and preprocess images while the model generates "
        "(default: 0 on a CPU, up to 4 per process on CUDA)",
    ),
    "sort_by_length": _opt(
        "generation",
        "--sort-by-length",
        action="store_true",
        help="batch questions of similar prompt length together (less padding); answers and the "
        "order of the output file are unchanged",
    ),
    "engine": _opt(
        "generation",
        "--engine",
        choices=("hf", "server"),
        default="hf",
        help="hf: the model in this process with transformers (default); server: an OpenAI-compatible "
        "chat-completions server (vLLM, SGLang, TGI) serving --model, at --server-url",
    ),
    "server_url": _opt(
        "generation",
        "--server-url",
        default=None,
        metavar="URL",
        help="server of --engine server, e.g. http://127.0.0.1:8000",
    ),
    "server_model": _opt(
        "generation",
        "--server-model",
        default=None,
        metavar="NAME",
        help="model name the server serves (default: --model); the API key is read from $MEDVQA_SERVER_API_KEY",
    ),
    "concurrency": _opt(
        "generation",
        "--concurrency",
        type=positive_int,
        default=8,
        metavar="N",
        help="requests in flight at once with --engine server (default: 8)",
    ),
    "timeout": _opt(
        "generation",
        "--timeout",
        type=float,
        default=120.0,
        metavar="S",
        help="seconds per request attempt with --engine server (default: 120)",
    ),
    "max_retries": _opt(
        "generation",
        "--max-retries",
        type=nonnegative_int,
        default=5,
        metavar="N",
        help="retries with exponential backoff on 429, 5xx and connection errors (default: 5)",
    ),
    "on_bad_image": _opt(
        "generation",
        "--on-bad-image",
        choices=("error", "skip"),
        default="error",
        help="an image that cannot be decoded: stop with an error naming the question and the file "
        "(default), or skip the question, count it and list it in the run record",
    ),
}

_SCORING: dict[str, Option] = {
    "profile": _opt(
        "scoring",
        "--profile",
        action=_Names,
        check=profile_names,
        nargs="+",
        default=None,
        metavar="NAME",
        help="metric profile(s): {profiles}, or all; "
        "several may follow one --profile, repeat it or be comma-separated (default: see the "
        "defaults table of the CLI guide; strict where one profile is used)",
    ),
    "n_boot": _opt(
        "scoring",
        "--n-boot",
        type=nonnegative_int,
        default=1000,
        metavar="N",
        help="bootstrap replicates of the 95%% intervals; 0 disables intervals (default: 1000)",
    ),
    "seed": _opt(
        "scoring",
        "--seed",
        type=int,
        default=0,
        metavar="N",
        help="seed of every random choice of the command: transforms, bootstrap intervals, the dropout "
        "masks of --as-run and the weights of --model tiny (default: 0)",
    ),
    "id_field": _opt("scoring", "--id-field", default="id", help="field holding the item id (default: id)"),
    "reference_field": _opt(
        "scoring",
        "--reference-field",
        default="reference",
        help="field holding the reference answer (default: reference)",
    ),
    "prediction_field": _opt(
        "scoring",
        "--prediction-field",
        default="prediction",
        help="field holding the raw model answer (default: prediction)",
    ),
    "answer_type_field": _opt(
        "scoring",
        "--answer-type-field",
        default="answer_type",
        help="field holding closed/open; when absent the type is inferred (default: answer_type)",
    ),
    "judge": _opt(
        "scoring",
        "--judge",
        default=None,
        metavar="MODEL_OR_URL",
        help="judge of open answers (medevalkit profile): a local causal LM (hub id or folder; needs "
        "medvqa[train]) or an OpenAI-compatible endpoint URL; 'none': no judge (default: none; "
        "'medvqa demo' on the tiny model uses a tiny random judge)",
    ),
}

_TRAINING: dict[str, Option] = {
    "sizes": _opt(
        "training",
        "--sizes",
        default=None,
        metavar="A,B",
        help="stage-1 sizes of the size sweep (Figure 3), comma-separated; 'none' skips the demo's sweep "
        "(default: the paper's 0,7000,20000,55000; the demo on the tiny model: 0, half and all of its "
        "caption pairs)",
    ),
    "stage1_size": _opt(
        "training",
        "--stage1-size",
        type=nonnegative_int,
        default=None,
        metavar="N",
        help="stage-1 caption pairs, a nested seeded subset; 0 skips stage 1 (default: the config's; "
        "the demo: every bundled pair for tiny, 55000 otherwise)",
    ),
    "report_to": _opt(
        "training",
        "--report-to",
        choices=("none", "tensorboard", "wandb", "mlflow"),
        default=None,
        help="send training logs and evaluation summaries to TensorBoard (OUTPUT/.../tensorboard), "
        "Weights & Biases or MLflow (default: none; each needs its package)",
    ),
    "no_resume": _opt(
        "training",
        "--no-resume",
        action="store_true",
        help="refuse to reuse or resume existing stage folders",
    ),
}

_OUTPUT: dict[str, Option] = {
    "output": _opt("output", "--output", "-o", type=Path, default=None, metavar="PATH"),
    "overwrite": _opt(
        "output", "--overwrite", action="store_true", help="replace what a previous run wrote there"
    ),
    "resume_unverified": _opt(
        "output",
        "--resume-unverified",
        action="store_true",
        help="resume a prediction file that has no run record (.run.json); its rows are kept and "
        "recorded as unverified, since nothing says which model and settings wrote them",
    ),
    "no_progress": _opt("output", "--no-progress", action="store_true", help="hide progress bars"),
}

OPTIONS: Mapping[str, Option] = {**_MODEL, **_DATA, **_GENERATION, **_SCORING, **_TRAINING, **_OUTPUT}
"""Every shared option by its destination name (``args.<name>``)."""


def add_options(
    parser: argparse.ArgumentParser,
    names: Iterable[str],
    *,
    required: Iterable[str] = (),
    helps: Mapping[str, str] | None = None,
    deprecated: Iterable[str] = (),
) -> None:
    """Add the options ``names`` (keys of :data:`OPTIONS`) to ``parser``, each in its group.

    Args:
        parser: The command's parser.
        names: Options to add, in the order ``--help`` lists them within their group.
        required: Options this command cannot run without.
        helps: Help texts of the options of :data:`PER_COMMAND_HELP` (only those).
        deprecated: Former spellings to accept (see :func:`add_deprecated`).
    """
    groups: dict[str, Any] = getattr(parser, "_medvqa_groups", {})
    if not groups:
        groups = {key: parser.add_argument_group(title) for key, title in GROUP_TITLES.items()}
        parser._medvqa_groups = groups  # type: ignore[attr-defined]
    must = set(required)
    own = dict(helps or {})
    unknown = set(own) - set(PER_COMMAND_HELP)
    if unknown:
        raise ValueError(f"help texts of shared options are shared; cannot reword {sorted(unknown)}")
    for name in names:
        opt = OPTIONS[name]
        kwargs = dict(opt.kwargs)
        if name == "family":
            kwargs["choices"] = _families()
            kwargs["help"] = kwargs["help"].format(families=", ".join(kwargs["choices"]))
        if name == "prompt":
            kwargs["choices"] = _prompts()
        if name == "profile":
            from medvqa.metrics import PROFILES

            kwargs["help"] = kwargs["help"].format(profiles=", ".join(PROFILES))
        if name in own:
            kwargs["help"] = own[name]
        if name in must:
            kwargs["required"] = True
        groups[opt.group].add_argument(*opt.flags, dest=name, **kwargs)
    add_deprecated(parser, *deprecated)

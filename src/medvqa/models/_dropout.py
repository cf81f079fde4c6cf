"""Dropout kept active at inference, seeded: the paper's evaluation as it was run.

The paper's code attached its LoRA adapter and generated answers without ever putting the
model in ``eval`` mode, so LoRA dropout (p = 0.1) perturbed every forward pass of the
evaluation. :func:`active_dropout` reproduces that flaw on purpose, with a recorded seed, for
the ``as_run`` evaluation mode; nothing in medvqa uses it by default.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["active_dropout"]


# Over 60 lines: half of it is the public docstring with its doctest.
@contextmanager
def active_dropout(model: Any, seed: int) -> Iterator[int]:
    """Apply every ``torch.nn.Dropout`` with ``p > 0`` even in ``eval`` mode, from a seeded stream.

    Inside the ``with`` block, each dropout module of ``model`` that is in ``eval`` mode
    drops activations as it would in training (keep with probability ``1 - p``, scale the
    kept ones by ``1 / (1 - p)``). The masks come from a ``torch.Generator`` per device,
    seeded with ``seed`` when the block starts, not from the global random state: the same
    seed, model, inputs and call order give the same masks, and sampling elsewhere is not
    disturbed. Modules in ``train`` mode are left to apply their own dropout.

    For an Idefics2 model with a peft LoRA adapter the affected modules are the adapters'
    ``lora_dropout`` layers: Idefics2's own dropout probabilities (attention, vision,
    perceiver) are 0 in the released configuration, so this is what ``train`` mode changed
    in the paper's evaluation.

    Args:
        model: Any ``torch.nn.Module``.
        seed: Seed of the dropout masks.

    Yields:
        The number of dropout modules made active (0: the block changes nothing, for example
        a base model without adapter, or an adapter trained with dropout 0).

    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Dropout(0.5)).eval()
    >>> x = torch.ones(8)
    >>> with active_dropout(net, seed=0) as n:
    ...     a = net(x)
    >>> with active_dropout(net, seed=0):
    ...     b = net(x)
    >>> n, bool(torch.equal(a, b)), bool(torch.equal(net(x), x)), sorted(set(a.tolist())) == [0.0, 2.0]
    (1, True, True, True)
    """
    import torch

    generators: dict[torch.device, torch.Generator] = {}

    def generator(device: torch.device) -> torch.Generator:
        if device not in generators:
            gen = torch.Generator(device=device)
            gen.manual_seed(seed)
            generators[device] = gen
        return generators[device]

    def hook(module: torch.nn.Dropout, args: tuple[Any, ...], output: Any) -> Any:
        if module.training or not args or not isinstance(args[0], torch.Tensor):
            return output
        x = args[0]
        keep = torch.rand(x.shape, generator=generator(x.device), device=x.device) >= module.p
        return x * keep.to(x.dtype) / (1.0 - module.p)

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, torch.nn.Dropout) and 0.0 < m.p < 1.0
    ]
    try:
        yield len(handles)
    finally:
        for h in handles:
            h.remove()

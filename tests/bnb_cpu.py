"""Force either of bitsandbytes' two CPU paths for 4-bit layers, on any x86 CPU.

bitsandbytes (0.50) has two ways to run a 4-bit ``Linear4bit`` on a CPU:

* the *plain* path: dequantize the weight and multiply (``bitsandbytes::gemm_4bit``);
* the *packed* path, taken in ``eval`` mode without gradients when the CPU has AVX512-BF16:
  the layer repacks its weight once (``bitsandbytes.functional._convert_weight_packed_for_cpu``)
  into tiles of 32 output rows, with the scales laid out per input block, and from then on
  calls a fused AVX512-BF16 kernel (``bitsandbytes::gemv_4bit`` on the CPU). Repacking needs
  ``out_features % 32 == 0`` and ``in_features % blocksize == 0`` (blocksize 64); a narrower
  layer fails with ``RuntimeError: shape '[32, 0]' is invalid ...``.

Which path a layer takes is decided when it is built (``Linear4bit.__init__`` reads
``bitsandbytes.nn.modules.has_avx512bf16()``). :func:`force_cpu_4bit_path` patches that
check, so a machine without AVX512-BF16 still exercises the packed path. There the fused
kernel is not registered (and its machine code could not run), so an exact reference of it
is registered instead: it unpacks the tiles, applies the per-block scales in bfloat16 and
multiplies with bfloat16 inputs, as the native kernel does, and it refuses the shapes the
native kernel cannot tile.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

CpuPath = Literal["auto", "packed", "plain"]
PACK_TILE_N = 32
"""Output rows per tile of bitsandbytes' packed CPU layout (``block_n``)."""


def native_packed_kernel() -> bool:
    """Whether this CPU runs bitsandbytes' own AVX512-BF16 kernel for packed 4-bit weights."""
    from bitsandbytes.functional import has_avx512bf16

    return bool(has_avx512bf16())


def _unpack(packed_weight: Any, n: int, k: int) -> Any:
    """The ``[n, k]`` 4-bit codes of a weight packed by ``_convert_weight_packed_for_cpu``."""
    import torch

    packed = packed_weight.contiguous().view(torch.uint8).reshape(-1, PACK_TILE_N)
    codes = torch.cat([packed & 0xF, (packed >> 4) & 0xF], dim=-1)  # [.., 64]: 32 low, 32 high
    codes = codes.reshape(n // PACK_TILE_N, k // 2, PACK_TILE_N, 2).transpose(1, 2)
    return codes.reshape(n, k).long()


def reference_packed_gemv(x: Any, weight: Any, shape: Any, absmax: Any, code: Any, blocksize: int) -> Any:
    """What the native AVX512-BF16 ``gemv_4bit`` CPU kernel computes, in plain PyTorch.

    Arguments are those of ``bitsandbytes::gemv_4bit``: the input, the packed weight, the
    weight's ``[out_features, in_features]`` shape, the ``[in / blocksize, out]`` scales,
    the 16 values of the 4-bit code and the block size.
    """
    import torch

    n, k = int(shape[0]), int(shape[1])
    if n % PACK_TILE_N or k % blocksize:
        # the native kernel tiles N by 32 and K by blocksize; it aborts the process otherwise
        raise RuntimeError(f"packed 4-bit CPU kernel cannot tile a [{n}, {k}] weight (blocksize {blocksize})")
    if tuple(absmax.shape) != (k // blocksize, n):
        raise RuntimeError(f"packed scales have shape {tuple(absmax.shape)}, expected {(k // blocksize, n)}")
    values = code.to(torch.bfloat16)[_unpack(weight, n, k)]  # [n, k]
    scales = absmax.to(torch.bfloat16).t().repeat_interleave(blocksize, dim=1)  # [n, k]
    dequantized = (values * scales).float()
    out = torch.nn.functional.linear(x.to(torch.bfloat16).float(), dequantized).to(torch.bfloat16)
    return out.to(x.dtype)


@contextmanager
def force_cpu_4bit_path(path: CpuPath) -> Iterator[None]:
    """Make 4-bit layers built inside the block take one CPU path (``auto``: leave it to the CPU).

    Layers built inside keep their path after the block; the reference kernel for packed
    weights stays registered only inside it, so run them there too.
    """
    if path == "auto":
        yield
        return
    import bitsandbytes.nn.modules as bnb_modules
    import pytest
    import torch

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(bnb_modules, "has_avx512bf16", lambda: path == "packed")
        lib = None
        if path == "packed" and not native_packed_kernel() and not _registered:
            lib = torch.library.Library("bitsandbytes", "IMPL")
            lib.impl("gemv_4bit", reference_packed_gemv, "CPU")
            _registered.append(lib)
        try:
            yield
        finally:
            if lib is not None:
                _registered.remove(lib)
                lib._destroy()


_registered: list[Any] = []
"""The registration of :func:`reference_packed_gemv` while one is active (blocks may nest)."""

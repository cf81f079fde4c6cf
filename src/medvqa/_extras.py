"""The ``medvqa[train]`` extra: which modules it brings, and the error that says to install it.

The light install (``pip install medvqa``) reads data, scores and reports; training, models
and generation need the ``medvqa[train]`` extra (torch, transformers, peft, ...). A function
or command that needs the extra and does not find it raises :class:`MissingExtraError`, whose
message names the missing module and the extra to install, instead of a bare
``ModuleNotFoundError`` from deep inside the call. The command line prints the same words.

>>> err = MissingExtraError.for_module("medvqa.models.tiny_idefics2()", "torch")
>>> print(err)
medvqa.models.tiny_idefics2() needs 'torch', part of the training extra: install torch for your machine, then pip install 'medvqa[train]'
>>> isinstance(err, ModuleNotFoundError), err.name
(True, 'torch')
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from medvqa._errors import MedVQAError

__all__ = [
    "TRAIN_EXTRA_MODULES",
    "MissingExtraError",
    "missing_train_module",
    "names_train_extra",
    "needs_train_extra",
]

TRAIN_EXTRA_MODULES = frozenset(
    {
        "torch",
        "transformers",
        "peft",
        "bitsandbytes",
        "accelerate",
        "datasets",
        "tokenizers",
        "safetensors",
        "tqdm",
        "yaml",
        "matplotlib",
    }
)
"""Top-level modules of the ``medvqa[train]`` extra (torch is installed beside it, per machine)."""

_CORE = ("torch", "transformers")  # checked before every call of a decorated function
_HOW = "install torch for your machine, then pip install 'medvqa[train]'"

_P = ParamSpec("_P")
_R = TypeVar("_R")


class MissingExtraError(MedVQAError, ModuleNotFoundError):
    """A module of the ``medvqa[train]`` extra is not installed.

    A :class:`ModuleNotFoundError` (``name`` is the missing module), so code that catches
    import errors keeps working, and a :class:`~medvqa.MedVQAError`.
    """

    @classmethod
    def for_module(cls, what: str, missing: str) -> MissingExtraError:
        """The error for ``what`` (a function or a command) that needs the module ``missing``."""
        return cls(f"{what} needs {missing!r}, part of the training extra: {_HOW}", name=missing)


def missing_train_module(exc: BaseException) -> str | None:
    """The top-level name of the training-extra module that ``exc`` reports missing, else ``None``.

    >>> missing_train_module(ModuleNotFoundError("No module named 'torch.nn'", name="torch.nn"))
    'torch'
    >>> missing_train_module(ModuleNotFoundError("No module named 'foo'", name="foo")) is None
    True
    """
    if not isinstance(exc, ModuleNotFoundError):
        return None
    top = (exc.name or "").split(".")[0]
    return top if top in TRAIN_EXTRA_MODULES else None


def needs_train_extra(func: Callable[_P, _R]) -> Callable[_P, _R]:
    """Decorate a public function that needs the ``medvqa[train]`` extra.

    Before the call, the decorated function checks that torch and transformers are
    installed (so that it fails before writing anything); when either is missing, or the
    call fails because another module of the extra is missing, it raises
    :class:`MissingExtraError` naming itself, the module and the extra to install. Every
    other error passes through unchanged.
    """
    return _guard(func, precheck=True)


def names_train_extra(func: Callable[_P, _R]) -> Callable[_P, _R]:
    """Like :func:`needs_train_extra`, without the check before the call.

    For a function that needs the extra on some paths only (a served model stands in for a
    local one): a missing module of the extra still becomes a :class:`MissingExtraError`.
    """
    return _guard(func, precheck=False)


def check_train_modules() -> None:
    """Raise :class:`ModuleNotFoundError` for the first core module of the extra that is missing.

    Inside a function decorated with :func:`names_train_extra` it becomes a
    :class:`MissingExtraError`; for a function that needs the extra on some paths only.
    """
    for name in _CORE:
        if importlib.util.find_spec(name) is None:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


def _guard(func: Callable[_P, _R], *, precheck: bool) -> Callable[_P, _R]:
    public = ".".join(part for part in func.__module__.split(".") if not part.startswith("_"))
    what = f"{public}.{func.__qualname__}()"

    @functools.wraps(func)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            if precheck:
                check_train_modules()
            return func(*args, **kwargs)
        except MissingExtraError:
            raise
        except ModuleNotFoundError as exc:
            missing = missing_train_module(exc)
            if missing is None:
                raise
            raise MissingExtraError.for_module(what, missing) from exc

    return wrapper

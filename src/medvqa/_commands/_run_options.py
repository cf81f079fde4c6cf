"""Options shared by the commands that write long runs: unverified resumes and unreadable images."""

from __future__ import annotations

from typing import Any

__all__ = ["add_run_options"]


def add_run_options(p: Any, *, resume: bool = True) -> None:
    """Add ``--on-bad-image`` (and, with ``resume``, ``--resume-unverified``) to a command's parser."""
    p.add_argument(
        "--on-bad-image",
        choices=("error", "skip"),
        default="error",
        help="an image that cannot be decoded: stop with an error naming the question and the file "
        "(default), or skip the question, count it and list it in the run record",
    )
    if resume:
        p.add_argument(
            "--resume-unverified",
            action="store_true",
            help="resume a prediction file that has no run record (.run.json); its rows are kept and "
            "recorded as unverified, since nothing says which model and settings wrote them",
        )

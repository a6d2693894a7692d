"""Quiet by default: the messages that hide real ones are silenced or shown once.

Without ``-v``, the command line:

* runs lm-eval's git probe (``git describe``, recorded as ``git_hash`` in its results) with its
  stderr discarded, so no "fatal: not a git repository" line appears outside a git checkout;
* drops known noise from lm-eval and transformers: the "Custom kwargs can be passed to
  --metadata" hint for tasks with a custom dataset (every trust task), the two warnings HFLM
  gives when it is handed an already-loaded model (the steering sweep does that on purpose),
  and the tokenizer's "sequence length is longer than the maximum" warning (the perplexity text
  is tokenized whole, then scored in windows);
* prints each Python warning once, as ``warning: <message>`` (no source line), and each
  lm-eval / transformers log message once;
* when stderr is not a terminal (a log file, CI), hides the progress bars of transformers and
  huggingface_hub ("Loading weights: 100%|...") that would fill it.

``-v`` (``--verbose``, or ``TRACING_BENCH_VERBOSE=1``, which the flag sets so worker processes
inherit it) shows everything as the libraries print it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import Any

ENV = "TRACING_BENCH_VERBOSE"
BARS_ENV = "HF_HUB_DISABLE_PROGRESS_BARS"

#: (logger name, part of the message) pairs dropped unless verbose.
NOISE: tuple[tuple[str, str], ...] = (
    ("lm_eval.api.task", "Custom kwargs can be passed to `--metadata`"),
    ("lm_eval.models.huggingface", "`pretrained` model kwarg is not of type `str`"),
    ("lm_eval.models.huggingface", "Passed an already-initialized model through `pretrained`"),
    ("transformers.tokenization_utils_base", "Token indices sequence length is longer than"),
)
#: Loggers whose messages are shown once each unless verbose.
ONCE_LOGGERS: tuple[str, ...] = (
    "lm_eval.evaluator",
    "lm_eval.api.task",
    "lm_eval.models.huggingface",
    "lm_eval.api.model",
    "lm_eval.evaluator_utils",
    "lm_eval.tasks",
    "lm_eval.loggers.evaluation_tracker",
    "transformers.tokenization_utils_base",
    "transformers.modeling_utils",
)


def _is_tty(stream: object) -> bool:
    try:
        return bool(stream.isatty())  # type: ignore[attr-defined]
    except (AttributeError, ValueError):
        return False


def verbose() -> bool:
    """Whether ``-v`` was given (here or in the process that started this one)."""
    return os.environ.get(ENV, "") not in ("", "0")


class _QuietFilter(logging.Filter):
    """Drops the messages in :data:`NOISE` and repeats of a message already shown."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[tuple[str, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if verbose():
            return True
        try:
            message = record.getMessage()
        except Exception:
            return True
        if any(record.name == name and start in message for name, start in NOISE):
            return False
        key = (record.name, message)
        if key in self.seen:
            return False
        self.seen.add(key)
        return True


_FILTER = _QuietFilter()
_shown_warnings: set[str] = set()


def _show_warning_once(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    text = str(message).strip()
    if text in _shown_warnings:
        return
    _shown_warnings.add(text)
    stream = file if file is not None else sys.stderr
    try:
        stream.write(f"warning: {text}\n")
    except (OSError, ValueError):  # a closed stream: nothing to report to
        pass


def configure(verbose_flag: bool) -> Callable[[], None]:
    """Set up the command line's output: quiet (default) or everything (``verbose_flag``).

    Returns:
        A function that undoes it (the CLI calls it when the command ends, so that in-process
        callers such as tests get their previous settings back).
    """
    before_env = {k: os.environ.get(k) for k in (ENV, BARS_ENV)}
    before_show = warnings.showwarning
    bars_were_on: bool | None = None
    _shown_warnings.clear()
    _FILTER.seen.clear()
    if verbose_flag:
        os.environ[ENV] = "1"
    else:
        for name in {n for n, _ in NOISE} | set(ONCE_LOGGERS):
            logger = logging.getLogger(name)
            if _FILTER not in logger.filters:
                logger.addFilter(_FILTER)
        warnings.showwarning = _show_warning_once
        if not _is_tty(sys.stderr):  # a log file or CI: no "Loading weights: 100%|...|" lines
            os.environ[BARS_ENV] = "1"  # read when transformers / huggingface_hub are imported
            if "transformers" in sys.modules:
                # lazy: transformers loads on first use, so importing logs stays light
                from transformers.utils import logging as hf_logging

                bars_were_on = hf_logging.is_progress_bar_enabled()
                hf_logging.disable_progress_bar()

    def restore() -> None:
        warnings.showwarning = before_show
        for key, value in before_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if bars_were_on:
            # lazy: transformers loads on first use, so importing logs stays light
            from transformers.utils import logging as hf_logging

            hf_logging.enable_progress_bar()

    return restore


def _quiet_git_hash() -> str | None:
    """lm-eval's ``get_git_commit_hash`` with git's stderr discarded (same value)."""
    # lazy: lm-eval loads on first use, so importing logs stays light
    from lm_eval.loggers.utils import get_commit_from_path

    try:
        return subprocess.check_output(["git", "describe", "--always"], stderr=subprocess.DEVNULL).strip().decode()
    except (subprocess.CalledProcessError, FileNotFoundError, OSError):
        return get_commit_from_path(os.getcwd())


@contextlib.contextmanager
def quiet_lm_eval() -> Iterator[None]:
    """Within the block, lm-eval's git probe writes nothing to stderr (unless verbose)."""
    if verbose():
        yield
        return
    # lazy: lm-eval loads on first use, so importing logs stays light
    import lm_eval.evaluator as evaluator

    original = evaluator.get_git_commit_hash
    evaluator.get_git_commit_hash = _quiet_git_hash
    try:
        yield
    finally:
        evaluator.get_git_commit_hash = original

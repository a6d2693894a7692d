"""``trust-steered``: lm-eval's ``steered`` HF model, loaded safely and steered at chosen positions.

:class:`TrustSteeredModel` extends :class:`lm_eval.models.hf_steered.SteeredModel` (and so
``HFLM``): it reuses lm-eval's ``steer`` hook context manager and its ``_model_call`` /
``_model_generate`` wrappers, and changes four things:

* the ``.pt`` file is read with ``torch.load(..., weights_only=True)`` and validated (hookpoint
  present in the model, hidden size, finite values, action ``add``); bad files are one-line
  :class:`~tracing_bench.errors.TracingBenchError`\\ s;
* ``alpha=`` overrides every ``steering_coefficient`` in the file;
* at hook time the vector is moved to the device and dtype of the hooked module's output (so
  ``parallelize=True`` / sharded models work); the cast is cached per (device, dtype);
* under ``accelerate launch`` each process scores its share of the requests, on CPU as on GPU
  (:class:`tracing_bench.models.hf.DataParallelMixin`);
* ``positions=all`` (default) adds ``alpha * v`` at every position, exactly as lm-eval's stock
  ``steered`` model does (same operations in the same order, so scores are identical);
  ``positions=last`` reproduces the released code, which adds the vector at the last position
  of every forward pass:

  - generation (``generate_until``, KV cache): the prompt pass adds at the last prompt token
    (prompts are left-padded by lm-eval, so position -1 is real in every row) and every later
    pass, which holds one new token, adds at that token;
  - log-likelihood (``loglikelihood``, ``loglikelihood_rolling``): lm-eval scores a
    continuation with ONE teacher-forced pass over ``context + continuation[:-1]``, so the
    faithful equivalent of the KV-cache behaviour is to steer **from the last context token
    onward** -- in each row, input positions ``inplen - contlen`` .. end, i.e. the position whose
    logits predict the first continuation token and every later continuation position. These
    are exactly the positions a KV-cache decode of the continuation would steer; the logits
    equal those of steering the last position of each incremental pass. Right padding after
    ``inplen`` is steered too, which cannot change any scored logit (causal attention, and
    lm-eval discards the padded logits). Row boundaries are recovered per request: requests
    are grouped so that each padded row identifies its request uniquely (token ids with
    trailing pad zeros stripped), and each group is scored by HFLM's own batching;
  - any other forward (``forward()``, lm-eval's batch-size probe): the last position of each row.

``preset=reference`` applies a vector as the released code did: ``positions=last`` and the model
in float32 (unless ``dtype=`` says otherwise); see :data:`tracing_bench.settings.PRESETS`.

Results record the settings: ``get_model_info()`` (lm-eval copies it into ``results["config"]``)
holds ``steering`` = path, file sha256, per-hookpoint vector sha256, alpha, positions, preset.

>>> import lm_eval, tracing_bench.models.steered  # registers "trust-steered"
>>> lm_eval.simple_evaluate(model="trust-steered",
...     model_args="pretrained=LLM360/AmberChat,steer_path=v.pt,alpha=2,positions=last", tasks=["trust"])
"""

from __future__ import annotations

import contextlib
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lm_eval.models.hf_steered as hf_steered
import torch
from lm_eval.api.registry import register_model
from lm_eval.models.hf_steered import SteeredModel, steer
from lm_eval.models.huggingface import HFLM
from torch import Tensor
from transformers import AutoConfig, AutoModelForCausalLM

from tracing_bench.errors import TracingBenchError
from tracing_bench.files import file_sha256
from tracing_bench.models.hf import DataParallelMixin
from tracing_bench.models.steerfile import load_steer_file, unpickling_refused, vector_sha256
from tracing_bench.settings import POSITIONS, Positions, preset_settings


class _AddHook:
    """``acts -> acts + alpha * v`` at the positions the owning model asks for.

    The vector is cast to the activations' device and dtype first, then multiplied by alpha
    (the order lm-eval's ``steered`` model uses), and cached per (device, dtype).
    """

    def __init__(self, owner: TrustSteeredModel, vector: Tensor, alpha: float) -> None:
        self.owner = owner
        self.vector = vector
        self.alpha = alpha
        self._cache: dict[tuple[torch.device, torch.dtype], Tensor] = {}

    def scaled(self, like: Tensor) -> Tensor:
        key = (like.device, like.dtype)
        v = self._cache.get(key)
        if v is None:
            v = self.vector.to(like.device).to(like.dtype) * self.alpha
            self._cache[key] = v
        return v

    def __call__(self, acts: Tensor) -> Tensor:
        v = self.scaled(acts)
        mask = self.owner._position_mask(acts)
        if mask is None:
            return acts + v
        return torch.where(mask.unsqueeze(-1), acts + v, acts)


@register_model("trust-steered")
class TrustSteeredModel(DataParallelMixin, SteeredModel):
    """HFLM with a steering vector added to one or more blocks' outputs.

    Args:
        pretrained: model id, folder or ``PreTrainedModel`` (as HFLM).
        steer_path: lm-eval ``steered`` ``.pt`` file (e.g. from ``tracing-bench steer extract``).
        alpha: coefficient for every hookpoint; ``None`` uses the file's ``steering_coefficient``.
        positions: ``all`` (every position, as lm-eval's ``steered``; the default) or ``last`` (the
            released code; see the module docstring for exactly which positions).
        preset: ``reference``: ``positions=last`` and a float32 model (unless ``dtype`` is given),
            the released code's application.
        device: as HFLM.
        **kwargs: everything HFLM takes (``revision``, ``dtype``, ``batch_size``, ``parallelize``...).
    """

    def __init__(
        self,
        pretrained: Any,
        steer_path: str,
        alpha: float | None = None,
        positions: Positions | None = None,
        device: str | None = None,
        preset: str | None = None,
        **kwargs: Any,
    ) -> None:
        fixed = preset_settings(preset)
        if fixed:
            if positions is not None and positions != fixed["positions"]:
                raise TracingBenchError(
                    f"positions={positions} contradicts preset={preset} (which steers positions={fixed['positions']}); "
                    "drop one of them"
                )
            positions = fixed["positions"]
            if kwargs.get("dtype") in (None, "auto") and isinstance(pretrained, str):
                kwargs["dtype"] = fixed["dtype"]
        loose_dtype = bool(fixed) and kwargs.get("dtype") in (None, "auto")  # a loaded model passed in
        positions = positions or "all"
        if positions not in POSITIONS:
            raise TracingBenchError(f"positions={positions!r} is not valid; use positions=all or positions=last")
        if alpha is not None:
            try:
                alpha = float(alpha)
            except (TypeError, ValueError):
                raise TracingBenchError(f"alpha={alpha!r} is not a number; pass e.g. alpha=-1.5") from None
            if alpha != alpha or alpha in (float("inf"), float("-inf")):
                raise TracingBenchError(f"alpha={alpha!r} is not finite; pass a finite number")
        steer_path = str(steer_path)
        # validate before the (slow) model load: file, hookpoints and hidden size from config.json
        if isinstance(pretrained, (str, Path)):
            config = check_steer_file_fits(steer_path, str(pretrained), kwargs.get("revision"))
        else:
            config = load_steer_file(steer_path)
        # SteeredModel.__init__ would torch.load(weights_only=False); initialise HFLM directly.
        HFLM.__init__(self, pretrained=pretrained, device=device, **kwargs)
        self._init_data_parallel()  # rank / world size under `accelerate launch` on CPU too
        if loose_dtype and self.model.dtype != getattr(torch, fixed["dtype"]):
            raise TracingBenchError(
                f"preset={preset} applies vectors to a {fixed['dtype']} model, but the model passed in is "
                f"{str(self.model.dtype).removeprefix('torch.')}; load it with dtype={fixed['dtype']} or pass dtype= "
                "explicitly"
            )
        self.steer_path = steer_path
        self.positions = positions
        self.alpha = alpha
        self._ll_starts: dict[tuple[int, ...], int] | None = None
        self._mode: str = "last_row"
        self._starts: Tensor | None = None
        modules = dict(self.model.base_model.named_modules())
        hidden = _hidden_size(self.model)
        self.hook_to_steer = {}
        self._steering_info: dict[str, Any] = {
            "steer_path": steer_path,
            "file_sha256": file_sha256(steer_path),
            "positions": positions,
            "alpha": alpha,
            "preset": preset,
            "hookpoints": {},
        }
        for hookpoint, entry in config.items():
            _check_entry(steer_path, hookpoint, entry, modules, hidden, type(self.model).__name__)
            vec = entry["steering_vector"].detach()
            coef = float(entry.get("steering_coefficient", 1.0)) if alpha is None else alpha
            self.hook_to_steer[hookpoint] = _AddHook(self, vec, coef)
            self._steering_info["hookpoints"][hookpoint] = {
                "coefficient": coef,
                "file_coefficient": float(entry.get("steering_coefficient", 1.0)),
                "vector_sha256": vector_sha256(vec),
                "norm": float(vec.double().norm()),
            }

    # ----------------------------------------------------------------- which positions to steer
    def _position_mask(self, acts: Tensor) -> Tensor | None:
        """Boolean ``[batch, seq]`` mask of steered positions, or ``None`` for all positions."""
        if self.positions == "all":
            return None
        batch, seq = acts.shape[0], acts.shape[1]
        pos = torch.arange(seq, device=acts.device)
        if self._mode == "starts" and self._starts is not None:
            return pos.unsqueeze(0) >= self._starts.to(acts.device).unsqueeze(1)
        return (pos == seq - 1).unsqueeze(0).expand(batch, seq)

    def _row_starts(self, inps: Tensor) -> Tensor | None:
        assert self._ll_starts is not None
        starts = []
        for row in inps.tolist():
            end = len(row)
            while end > 0 and row[end - 1] == 0:
                end -= 1
            key = tuple(row[:end])
            start = self._ll_starts.get(key)
            if start is None:
                if len(set(row)) == 1:  # lm-eval's batch-size probe (torch.ones): not a request
                    return None
                raise RuntimeError(
                    "trust-steered positions=last: a log-likelihood row matches no request; "
                    "this lm-eval version batches differently -- use positions=all or report this"
                )
            starts.append(start)
        return torch.tensor(starts, dtype=torch.long)

    # --------------------------------------------------------------------- lm-eval entry points
    def _model_call(self, inps: Tensor, attn_mask: Tensor | None = None, labels: Tensor | None = None) -> Tensor:
        if self.positions == "last" and self._ll_starts is not None:
            starts = self._row_starts(inps)
            self._mode, self._starts = ("starts", starts) if starts is not None else ("last_row", None)
        try:
            with steer(self.model, self.hook_to_steer):
                return HFLM._model_call(self, inps, attn_mask=attn_mask, labels=labels)
        finally:
            self._mode, self._starts = "last_row", None

    def _model_generate(self, *args: Any, **kwargs: Any) -> Tensor:
        self._mode = "last_row"
        with steer(self.model, self.hook_to_steer):
            return HFLM._model_generate(self, *args, **kwargs)

    def _loglikelihood_tokens(
        self,
        requests: list[tuple[tuple[str, str], list[int], list[int]]],
        disable_tqdm: bool = False,
        override_bs: int | None = None,
    ) -> list[tuple[float, bool]]:
        if self.positions == "all" or self.backend != "causal":
            return super()._loglikelihood_tokens(requests, disable_tqdm=disable_tqdm, override_bs=override_bs)
        groups = self._unambiguous_groups(requests)
        results: list[Any] = [None] * len(requests)
        for starts, members in groups:
            self._ll_starts = starts
            try:
                out = super()._loglikelihood_tokens(
                    [requests[i] for i in members], disable_tqdm=disable_tqdm, override_bs=override_bs
                )
            finally:
                self._ll_starts = None
            for i, r in zip(members, out, strict=True):
                results[i] = r
        return results

    def _unambiguous_groups(self, requests: list[Any]) -> list[tuple[dict[tuple[int, ...], int], list[int]]]:
        """Split requests so that, within a group, a padded row's token ids identify its start.

        Usually one group; a request goes to a later group only when its row (trailing zeros
        stripped) equals another request's row but needs a different first steered position.
        """
        groups: list[tuple[dict[tuple[int, ...], int], list[int]]] = []
        for i, (_, context_enc, continuation_enc) in enumerate(requests):
            inp = (list(context_enc) + list(continuation_enc))[-(self.max_length + 1) :][:-1]
            start = max(len(inp) - len(continuation_enc), 0)
            end = len(inp)
            while end > 0 and inp[end - 1] == 0:
                end -= 1
            key = tuple(inp[:end])
            for starts, members in groups:
                if starts.get(key, start) == start:
                    starts[key] = start
                    members.append(i)
                    break
            else:
                groups.append(({key: start}, [i]))
        return groups

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        self._mode = "last_row"
        with torch.no_grad(), steer(self.model, self.hook_to_steer):
            return self.model.forward(*args, **kwargs)

    def get_model_info(self) -> dict:
        """HFLM's model info plus ``steering`` (path, hashes, alpha, positions, hookpoints)."""
        info = super().get_model_info()
        info["steering"] = dict(self._steering_info)
        return info


def _hidden_size(model: Any) -> int | None:
    config = getattr(model, "config", None)
    if config is None:
        return None
    if hasattr(config, "get_text_config"):
        config = config.get_text_config()
    size = getattr(config, "hidden_size", None)
    return int(size) if size is not None else None


# ------------------------------------------------------------- lm-eval's stock `steered` model
def check_steer_file_fits(
    steer_path: str, pretrained: str, revision: str | None = None, *, stock: bool = False
) -> dict[str, dict[str, Any]]:
    """Validate a steering file against a model's architecture, without loading its weights.

    The file is read with ``weights_only=True`` (:func:`tracing_bench.models.steerfile.load_steer_file`);
    every hookpoint must be a module of ``model.base_model`` and every whole-residual vector must
    have the model's hidden size. The architecture is built from ``config.json`` on the ``meta``
    device (no memory, no weights).

    Args:
        steer_path: the ``.pt`` file.
        pretrained: model id or folder.
        revision: hub revision.
        stock: the file is for lm-eval's stock ``steered`` model (``clamp``, ``bias`` and
            ``head_index`` are allowed; ``trust-steered`` supports ``add`` only).

    Returns:
        the file's content.

    Raises:
        TracingBenchError: one line naming the file and what does not fit.
    """
    config = load_steer_file(steer_path, stock=stock)
    try:
        model_config = AutoConfig.from_pretrained(pretrained, **({"revision": revision} if revision else {}))
        with torch.device("meta"):
            skeleton = AutoModelForCausalLM.from_config(model_config)
    except Exception:
        return config
    modules = dict(skeleton.base_model.named_modules())
    hidden = _hidden_size(skeleton)
    for hookpoint, entry in config.items():
        _check_entry(steer_path, hookpoint, entry, modules, hidden, type(skeleton).__name__)
    return config


def _check_entry(
    steer_path: str, hookpoint: str, entry: dict[str, Any], modules: dict[str, Any], hidden: int | None, arch: str
) -> None:
    if hookpoint not in modules:
        blocks = [n for n in modules if n.count(".") == 1 and n.rsplit(".", 1)[1].isdigit()]
        hint = f"{blocks[0]} .. {blocks[-1]}" if blocks else "none found"
        raise TracingBenchError(
            f"{steer_path}: hookpoint {hookpoint!r} is not a module of {arch}"
            f" (blocks relative to model.base_model: {hint}); extract the vector for this architecture"
            " or re-save it with the right hookpoint"
        )
    vec = entry["steering_vector"]
    if hidden is not None and entry.get("head_index") is None and vec.shape[-1] != hidden:
        raise TracingBenchError(
            f"{steer_path}: steering_vector for {hookpoint!r} has {vec.shape[-1]} dimensions but the model's "
            f"hidden size is {hidden}; extract the vector from a checkpoint of the same architecture"
        )


class _WeightsOnlyTorch:
    """``torch`` as lm-eval's ``hf_steered`` module sees it, except that ``load`` never unpickles code."""

    def __getattr__(self, name: str) -> Any:
        return getattr(torch, name)

    @staticmethod
    def load(f: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs["weights_only"] = True
        kwargs.setdefault("map_location", "cpu")
        try:
            return torch.load(f, *args, **kwargs)
        except pickle.UnpicklingError as e:
            raise unpickling_refused(Path(getattr(f, "name", str(f))), e) from None


@contextlib.contextmanager
def safe_stock_steered() -> Iterator[None]:
    """Within the block, lm-eval's stock ``steered`` model reads its file with ``weights_only=True``.

    The stock model calls ``torch.load(f, weights_only=False)``, which runs any code pickled into
    the file. Inside this block its module sees a ``torch`` whose ``load`` forces
    ``weights_only=True``; everything else (hooks, ``add``/``clamp``, casting) is lm-eval's own
    code, so scores are those of the stock model. ``tracing-bench eval --model steered`` runs
    lm-eval inside it.
    """
    original = hf_steered.torch
    hf_steered.torch = _WeightsOnlyTorch()
    try:
        yield
    finally:
        hf_steered.torch = original

"""Released upstream TD-MPC2 checkpoints: recognise them and rename their weights to ours.

An upstream checkpoint is `{"model": world_model_state_dict}` with the key names of the
reference implementation (tdmpc2-spec.md, appendix B). Only the names differ from ours, never
the values or shapes:

    upstream                                   ours
    _encoder.state.{i}.<p>                     _encoder.{i}.<p>
    _dynamics / _reward / _pi / _termination   unchanged
    _Qs.params.{l}.weight / .bias              _Qs.w{l+1} / _Qs.b{l+1}
    _Qs.params.{l}.ln.weight / .ln.bias        _Qs.g{l+1} / _Qs.s{l+1}
    _target_Qs_params.{...}                    _target_Qs.{same renaming as _Qs}
    _detach_Qs_params.*                        dropped (the same values as _Qs.params)
    log_std_min, log_std_dif                   checked against the config's log_std_min/max
    *.__batch_size, *.__device                 dropped (tensordict bookkeeping)

`convert_upstream_model` is pure: a mapping in, a mapping out, `UpstreamError` (one sentence,
naming the upstream key) when the weights do not fit the agent's shapes.
"""
from __future__ import annotations

import re
from typing import Mapping

import torch

_Q_PARAMETER = {"weight": "w", "bias": "b", "ln.weight": "g", "ln.bias": "s"}
_Q_KEY = re.compile(r"^(_Qs\.params|_target_Qs_params|_detach_Qs_params)\.(\d+)\.(weight|bias|ln\.weight|ln\.bias)$")
_UNCHANGED = ("_dynamics.", "_reward.", "_pi.", "_termination.")
UPSTREAM_MARKERS = ("_encoder.state.", "_Qs.params.", "_target_Qs_params.")


class UpstreamError(ValueError):
    """Upstream weights that do not fit this agent; the message is one sentence."""


def is_upstream_state(state) -> bool:
    """True for `{"model": ...}` holding upstream key names (and not our own checkpoint format)."""
    if not isinstance(state, Mapping) or "format" in state or not isinstance(state.get("model"), Mapping):
        return False
    return any(str(key).startswith(UPSTREAM_MARKERS) for key in state["model"])


def our_key(upstream_key: str) -> str | None:
    """Our name for one upstream key; None for keys that carry no weights of ours."""
    leaf = upstream_key.rsplit(".", 1)[-1]
    if leaf.startswith("__") or upstream_key in ("log_std_min", "log_std_dif"):
        return None
    if upstream_key.startswith("_encoder.state."):
        return "_encoder." + upstream_key[len("_encoder.state."):]
    if upstream_key.startswith(_UNCHANGED):
        return upstream_key
    match = _Q_KEY.match(upstream_key)
    if match is None:
        return upstream_key  # unknown: reported by the fit check below
    group, layer, parameter = match.groups()
    if group == "_detach_Qs_params":
        return None
    prefix = "_Qs" if group == "_Qs.params" else "_target_Qs"
    return f"{prefix}.{_Q_PARAMETER[parameter]}{int(layer) + 1}"


def convert_upstream_model(upstream: Mapping[str, torch.Tensor], own: Mapping[str, torch.Tensor],
                           log_std_min: float, log_std_max: float) -> dict[str, torch.Tensor]:
    """Upstream world-model weights renamed to our keys. `own` is our model's state dict (its
    shapes are checked); `log_std_min/max` are the config's policy log-std bounds."""
    converted, names = {}, {}
    for key, value in upstream.items():
        ours = our_key(str(key))
        if ours is not None:
            converted[ours], names[ours] = value, str(key)
    if any(k.startswith("_Qs.") and k not in own for k in converted) and "_Qs.params.0.weight" not in upstream:
        raise UpstreamError("it uses the pre-2024 upstream key names, which are not supported "
                            "(re-save it with the current upstream code)")
    for ours, key in names.items():
        if ours not in own:
            raise UpstreamError(f"its parameter '{key}' has no counterpart in this agent "
                                "(a multi-task or other architecture checkpoint)")
        if tuple(converted[ours].shape) != tuple(own[ours].shape):
            raise UpstreamError(f"its parameter '{key}' has shape {tuple(converted[ours].shape)} but this agent "
                                f"needs {tuple(own[ours].shape)} (trained on another task or model size)")
    missing = [k for k in own if k not in converted]
    if missing:
        raise UpstreamError(f"it has no weights for this agent's '{missing[0]}' (another model size, or "
                            "episodic set differently)")
    _check_log_std(upstream, log_std_min, log_std_max)
    return converted


def _check_log_std(upstream: Mapping[str, torch.Tensor], log_std_min: float, log_std_max: float) -> None:
    if "log_std_min" not in upstream or "log_std_dif" not in upstream:
        return
    low = float(upstream["log_std_min"])
    high = low + float(upstream["log_std_dif"])
    if abs(low - log_std_min) > 1e-6 or abs(high - log_std_max) > 1e-6:
        raise UpstreamError(f"its policy log-std range is [{low:g}, {high:g}] but this config's is "
                            f"[{log_std_min:g}, {log_std_max:g}] (set log_std_min and log_std_max)")

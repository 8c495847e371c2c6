"""The jobs that describe and write nothing: ``info`` (a checkpoint: configuration, parameters,
neurons) and ``profiles`` (hardware profiles with their sources)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .checkpoints import ModelOptions, Notify, as_path, load


@dataclass(frozen=True, eq=False)
class InfoResult:
    """``summary``: what ``sdm-neuro info --json`` prints (:func:`model_summary`); ``config``
    the checkpoint's :class:`~sdm_neuro.config.UNetConfig`."""

    summary: dict[str, Any]
    config: Any

    def rows(self) -> list[tuple[str, str]]:
        """(what, value) of the info table."""
        cfg, info = self.config, self.summary
        return [("variant", "SDM temporal-wise (TSM)" if cfg.tsm else "SDDPM"),
                ("ch / ch_mult", f"{cfg.ch} / {list(cfg.ch_mult)}"),
                ("num_res_blocks", str(cfg.num_res_blocks)),
                ("image", f"{cfg.img_ch} x {cfg.img_size} x {cfg.img_size}"),
                ("diffusion steps T", str(cfg.diffusion_steps)),
                ("SNN steps T_snn", str(cfg.snn_steps)),
                ("parameters", f"{info['parameters']:,}"),
                ("state_dict entries", str(info["state_dict_entries"])),
                ("spiking layers", str(info["spiking_layers"])),
                ("neurons (per SNN step)", f"{info['neurons']:,}")]

    def layer_rows(self) -> list[tuple[str, str, str]]:
        """(spiking layer, C x H x W, neurons) per spiking layer."""
        return [(name, f"{c} x {h} x {w}", f"{c * h * w:,}")
                for name, (c, h, w) in self.summary["layers"].items()]


@dataclass(frozen=True, eq=False)
class ProfilesResult:
    profiles: tuple[Any, ...]   # Profile objects, in the order asked

    @staticmethod
    def title(prof) -> str:
        return f"{prof.name}: {prof.title} ({prof.process}, {prof.kind}) - {prof.path}"

    @staticmethod
    def rows(prof) -> list[tuple[str, str, str, str]]:
        """(figure, value, tag, source) of every figure of profile ``prof``."""
        rows = []
        for key, fig in prof.sources():
            src = fig.source + (f" | derived: {fig.derivation}" if fig.derivation else "")
            value = fig.label.rsplit(" (", 1)[0]
            rows.append((key, value, fig.tag + (" (derived)" if fig.derivation else ""), src))
        return rows


def model_summary(model, ckpt) -> dict[str, Any]:
    """What ``info`` reports, as plain data."""
    from ..models import count_parameters, neuron_shapes

    shapes = neuron_shapes(model)
    return {
        "checkpoint": str(ckpt.path),
        "format": ckpt.kind,
        "weights": ckpt.weights,
        "config": ckpt.config.to_dict(),
        "snn_steps": ckpt.config.snn_steps,
        "parameters": count_parameters(model),
        "state_dict_entries": len(ckpt.state_dict),
        "spiking_layers": len(shapes),
        "neurons": sum(c * h * w for c, h, w in shapes.values()),
        "layers": {name: list(s) for name, s in shapes.items()},
        "notes": list(ckpt.notes),
        "meta": ckpt.meta,
    }


def info(checkpoint: str | Path | None = None, *, weights: str = "auto",
         snn_steps: int | None = None, img_size: int | None = None,
         notify: Notify | None = None) -> InfoResult:
    """Read ``checkpoint`` (default: the shipped model) and summarise it."""
    model, ckpt = load(ModelOptions(as_path(checkpoint), weights, snn_steps, img_size,
                                    notify=notify))
    return InfoResult(model_summary(model, ckpt), ckpt.config)


def profiles(profile: Sequence[str | Path] = ()) -> ProfilesResult:
    """The hardware profiles named (shipped names or TOML files); default: every shipped one."""
    from ..hardware_profiles.profile import get_profile, shipped_profiles

    if isinstance(profile, str | Path):
        profile = [profile]
    return ProfilesResult(tuple(get_profile(name) for name in profile or list(shipped_profiles())))

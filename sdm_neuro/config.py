"""Model configuration: the constructor arguments of the reference ``Spk_UNet`` (plus TSM and the
image size, which the reference keeps outside the model), as one frozen dataclass."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError


@dataclass(frozen=True)
class UNetConfig:
    """Spiking U-Net hyper-parameters.

    ``diffusion_steps`` is the reference ``T`` (it only sizes the sinusoidal table),
    ``snn_steps`` the reference ``timestep`` (T_snn), ``tsm`` selects SDM's temporal-wise
    variant, ``img_size`` the (square) image side the model is run on.
    """

    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 2, 4)
    num_res_blocks: int = 2
    img_ch: int = 3
    diffusion_steps: int = 1000
    snn_steps: int = 4
    tsm: bool = False
    img_size: int = 32

    def __post_init__(self) -> None:
        object.__setattr__(self, "ch_mult", tuple(int(m) for m in self.ch_mult))
        checks = [
            (self.ch >= 2 and self.ch % 2 == 0, f"ch must be an even integer >= 2 (got {self.ch})"),
            (len(self.ch_mult) >= 1 and all(m >= 1 for m in self.ch_mult),
             f"ch_mult must be a non-empty list of positive integers (got {list(self.ch_mult)})"),
            (self.num_res_blocks >= 0, f"num_res_blocks must be >= 0 (got {self.num_res_blocks})"),
            (self.img_ch >= 1, f"img_ch must be >= 1 (got {self.img_ch})"),
            (self.diffusion_steps >= 1, f"diffusion_steps must be >= 1 (got {self.diffusion_steps})"),
            (self.snn_steps >= 1, f"snn_steps (T_snn) must be >= 1 (got {self.snn_steps})"),
            (self.img_size >= 1, f"img_size must be >= 1 (got {self.img_size})"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(f"Invalid model configuration: {msg}.")
        factor = 2 ** (len(self.ch_mult) - 1)
        if self.img_size % factor:
            raise ConfigError(
                f"Invalid model configuration: img_size {self.img_size} is not divisible by "
                f"2**(len(ch_mult)-1) = {factor}, which {len(self.ch_mult)} resolution levels need."
            )

    @property
    def tdim(self) -> int:
        """Width of the time embedding (4 * ch, as in the reference)."""
        return 4 * self.ch

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["ch_mult"] = list(self.ch_mult)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, source: str = "config") -> UNetConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"{source}: unknown model configuration key(s) {unknown}; "
                              f"expected a subset of {sorted(names)}.")
        try:
            return cls(**d)
        except TypeError as e:  # wrong value types
            raise ConfigError(f"{source}: invalid model configuration {d}: {e}.") from None

    def replace(self, **changes: Any) -> UNetConfig:
        return dataclasses.replace(self, **changes)


# The SDDPM CIFAR-10 paper configuration (66,696,413 parameters, 455 state_dict entries).
PAPER_CIFAR10 = UNetConfig(ch=128, ch_mult=(1, 2, 2, 4), num_res_blocks=2, img_ch=3,
                           diffusion_steps=1000, snn_steps=4, tsm=False, img_size=32)

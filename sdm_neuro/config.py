"""Model configuration: the constructor arguments of the reference ``Spk_UNet`` (plus TSM and the
image size, which the reference keeps outside the model), as one frozen dataclass."""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError

# Upper limits of the configuration values (inclusive).
LIMITS = {"ch": 1024, "num_res_blocks": 16, "img_ch": 64, "diffusion_steps": 100_000,
          "snn_steps": 256, "img_size": 1024}
MAX_LEVELS = 8  # len(ch_mult)
MAX_CH_MULT = 64
_INT_FIELDS = ("ch", "num_res_blocks", "img_ch", "diffusion_steps", "snn_steps", "img_size")



def _invalid(msg: str) -> ConfigError:
    return ConfigError(f"Invalid model configuration: {msg}.")


def _strict_int(name: str, value: Any) -> int:
    """``value`` as an int if it is one (numpy integers too); a bool, float or string is an
    error, never a silent cast (``int(1.5)`` would truncate, ``int("12")`` parse)."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    raise _invalid(f"{name} must be an integer (got {_show(value)})")


def _strict_ch_mult(value: Any) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)) or not value:
        raise _invalid(f"ch_mult must be a non-empty list of positive integers "
                       f"(got {_show(value)})")
    return tuple(_strict_int(f"ch_mult[{i}]", m) for i, m in enumerate(value))


def _show(value: Any) -> str:
    """A value and its type for an error message, shortened (it may come from a file)."""
    text = repr(value)
    return f"{text[:60]}{'...' if len(text) > 60 else ''} of type {type(value).__name__}"


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
        ints = {name: _strict_int(name, getattr(self, name)) for name in _INT_FIELDS}
        for name, value in ints.items():
            object.__setattr__(self, name, value)
        object.__setattr__(self, "ch_mult", _strict_ch_mult(self.ch_mult))
        if not isinstance(self.tsm, bool):
            raise _invalid(f"tsm must be true or false (got {_show(self.tsm)})")
        if not (self.ch >= 2 and self.ch % 2 == 0):
            raise _invalid(f"ch must be an even integer >= 2 (got {self.ch})")
        if not all(m >= 1 for m in self.ch_mult):
            raise _invalid(f"ch_mult must be a non-empty list of positive integers "
                           f"(got {list(self.ch_mult)})")
        lows = {"num_res_blocks": 0, "img_ch": 1, "diffusion_steps": 1, "snn_steps": 1,
                "img_size": 1}
        for name, low in lows.items():
            if getattr(self, name) < low:
                label = "snn_steps (T_snn)" if name == "snn_steps" else name
                raise _invalid(f"{label} must be >= {low} (got {getattr(self, name)})")
        self._check_limits()
        factor = 2 ** (len(self.ch_mult) - 1)
        if self.img_size % factor:
            raise _invalid(f"img_size {self.img_size} is not divisible by 2**(len(ch_mult)-1)"
                           f" = {factor}, which {len(self.ch_mult)} resolution levels need")

    def _check_limits(self) -> None:
        """Upper limits, so that a checkpoint or manifest cannot make a reader allocate a
        model or an activation map of absurd size (the values are far beyond any published
        spiking diffusion model)."""
        for name, limit in LIMITS.items():
            if getattr(self, name) > limit:
                raise _invalid(f"{name} {getattr(self, name):,} exceeds the limit {limit:,}")
        if len(self.ch_mult) > MAX_LEVELS:
            raise _invalid(f"ch_mult has {len(self.ch_mult)} levels, more than the limit "
                           f"{MAX_LEVELS}")
        if max(self.ch_mult) > MAX_CH_MULT:
            raise _invalid(f"ch_mult {list(self.ch_mult)} has a multiplier above the limit "
                           f"{MAX_CH_MULT}")

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
        if not isinstance(d, dict):
            raise ConfigError(f"{source}: the model configuration is a {type(d).__name__}, "
                              "expected a dict.")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"{source}: unknown model configuration key(s) {unknown}; "
                              f"expected a subset of {sorted(names)}.")
        missing = sorted(names - set(d))
        if missing:
            raise ConfigError(f"{source}: model configuration key(s) {missing} missing; "
                              f"expected all of {sorted(names)}.")
        try:
            return cls(**d)
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from None

    def replace(self, **changes: Any) -> UNetConfig:
        return dataclasses.replace(self, **changes)


# The SDDPM CIFAR-10 paper configuration (66,696,413 parameters, 455 state_dict entries).
PAPER_CIFAR10 = UNetConfig(ch=128, ch_mult=(1, 2, 2, 4), num_res_blocks=2, img_ch=3,
                           diffusion_steps=1000, snn_steps=4, tsm=False, img_size=32)

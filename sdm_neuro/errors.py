"""Exception classes. Every user-facing failure is one of these, with a message that names the
file, key, layer or parameter and the limit it broke; the CLI maps each class to an exit code."""

from __future__ import annotations


class SdmNeuroError(Exception):
    """Base class. ``exit_code`` is what the CLI returns for it."""

    exit_code = 1


class UsageError(SdmNeuroError):
    """An argument or option has an invalid value."""

    exit_code = 2


class ConfigError(SdmNeuroError):
    """A model configuration is inconsistent (e.g. channel multipliers, image size)."""

    exit_code = 3


class CheckpointError(SdmNeuroError):
    """A checkpoint file cannot be read: missing, not a checkpoint, truncated, or unsafe."""

    exit_code = 4


class CheckpointMismatchError(CheckpointError):
    """A checkpoint's state_dict does not fit the model: missing/unexpected keys, shapes."""


class DatasetError(SdmNeuroError):
    """A dataset file is missing or malformed (names the file and what was expected)."""

    exit_code = 5


class ProfileError(SdmNeuroError):
    """A hardware profile file is missing, not TOML, or breaks the profile schema."""

    exit_code = 6


class ExportError(SdmNeuroError):
    """An export failed, or its check against the reference implementation did not hold."""

    exit_code = 7


class ConstraintError(SdmNeuroError):
    """The network breaks a limit of the target hardware profile (export without
    ``--allow-violations``); the message lists every violation with its actual value and limit."""

    exit_code = 8

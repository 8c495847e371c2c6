"""The one format / version check of sdm-neuro's file readers (sdm_neuro/formats.py)."""

import re

import numpy as np
import pytest

from sdm_neuro.errors import CheckpointError, ExportError
from sdm_neuro.formats import check_format, supported_versions

KW = {"expected": "sdm-neuro-thing", "where": "x.pt", "what": "an sdm-neuro thing",
      "error": CheckpointError}


@pytest.mark.parametrize("version, newest", [(1, 1), (1, 3), (3, 3), (np.int64(2), 2)])
def test_accepts_versions_1_to_the_newest(version, newest):
    got = check_format("sdm-neuro-thing", version, supported_max=newest, **KW)
    assert got == int(version) and type(got) is int


@pytest.mark.parametrize("version", [0, -1, 2, True, False, np.bool_(True), 1.0, "1", None,
                                     [1]])
def test_refuses_other_versions_and_non_integers(version):
    with pytest.raises(CheckpointError, match=re.escape(
            f"x.pt: not an sdm-neuro thing: format_version {version!r} is not supported (this "
            "sdm-neuro reads version 1).")):
        check_format("sdm-neuro-thing", version, supported_max=1, **KW)


def test_names_the_supported_range():
    assert supported_versions(1) == "version 1"
    assert supported_versions(3) == "versions 1 to 3"
    with pytest.raises(CheckpointError, match=r"reads versions 1 to 3\)\.$"):
        check_format("sdm-neuro-thing", 4, supported_max=3, **KW)


@pytest.mark.parametrize("fmt", ["sdm-neuro-other", None, 1, b"sdm-neuro-thing"])
def test_refuses_another_format(fmt):
    with pytest.raises(CheckpointError, match=re.escape(
            f"x.pt: not an sdm-neuro thing (format={fmt!r}, expected 'sdm-neuro-thing').")):
        check_format(fmt, 1, supported_max=1, **KW)


def test_raises_the_callers_class_and_shows_with_its_function():
    with pytest.raises(ExportError, match=r"format_version <2> is not supported"):
        check_format("sdm-neuro-thing", 2, supported_max=1, **{**KW, "error": ExportError},
                     show=lambda v: f"<{v}>")

"""Malformed checkpoints (issue 13): every one is a CheckpointError / ConfigError that names the
file and the key, exits 3 or 4 through the CLI, and nothing is accepted silently or allocated
before its declared size is checked."""

import io
import json
import math
import os
import threading
import zipfile
from pathlib import Path

import pytest
import torch

from sdm_neuro import CheckpointError, CheckpointMismatchError
from sdm_neuro import checkpoint as ckpt_mod
from sdm_neuro.checkpoint import (
    FORMAT_TAG,
    read_checkpoint,
    read_train_state,
    save_checkpoint,
)
from sdm_neuro.cli import main as cli
from sdm_neuro.errors import ConfigError

# The checkpoints are of tests/conftest.py's tiny model (tiny_config, tiny_state_dict).


@pytest.fixture(scope="module")
def tsm_config(tiny_config):
    """The tiny model with TSM."""
    return tiny_config.replace(tsm=True)


@pytest.fixture
def native(tiny_config, tiny_state_dict):
    """``native(path, *, cfg=tiny_config, sd=None, **top)``: a native checkpoint written by hand,
    with any top-level entry replaced."""

    def write(path: Path, *, cfg=None, sd=None, **top) -> Path:
        cfg = tiny_config if cfg is None else cfg
        payload = {"format": FORMAT_TAG, "format_version": 1, "config": cfg.to_dict(),
                   "net_model": tiny_state_dict(cfg) if sd is None else sd, "meta": {}, **top}
        torch.save(payload, path)
        return path

    return write


def fails_clearly(path: Path, error: type, *needles: str, capsys) -> str:
    """``read_checkpoint`` raises ``error`` whose message names ``path`` and every needle, and
    ``sdm-neuro info`` exits with its code in one line; returns the message."""
    with pytest.raises(error) as info:
        read_checkpoint(path)
    msg = str(info.value)
    assert type(info.value) is error, (type(info.value), msg)
    assert str(path) in msg, msg
    for needle in needles:
        assert needle in msg, (needle, msg)
    code = cli(["info", str(path)])
    err = capsys.readouterr().err
    assert code == error.exit_code, err
    assert "internal error" not in err and "Traceback" not in err and str(path) in err
    assert len(err.strip().splitlines()) == 1, err
    return msg


@pytest.fixture
def fifo(tmp_path):
    """A named pipe that a thread keeps feeding with junk: code that opens it instead of
    refusing it reads the junk and fails, rather than blocking the suite forever."""
    stop, threads = threading.Event(), []

    def feed(path: Path) -> None:
        while not stop.is_set():
            fd = os.open(path, os.O_WRONLY)  # blocks until a reader opens the pipe
            try:
                os.write(fd, b"junk, not a checkpoint")
            except BrokenPipeError:
                pass
            finally:
                os.close(fd)

    def make(name: str) -> Path:
        path = tmp_path / name
        os.mkfifo(path)
        threads.append((path, threading.Thread(target=feed, args=(path,), daemon=True)))
        threads[-1][1].start()
        return path

    yield make
    stop.set()
    for path, thread in threads:
        while thread.is_alive():  # release a writer blocked in open()
            os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
            thread.join(0.05)


# ------------------------------------------------------------------ 1. not a checkpoint --

# Text whose first byte is a pickle opcode: the unpickler used to fail with IndexError /
# struct.error, an "internal error".
@pytest.mark.parametrize("text", [b"(abc def\n", b")abc def\n", b"G x 1 2\n", b"hello\n",
                                  b'{"net_model": {}}\n'])
def test_text_file_is_not_a_checkpoint(tmp_path, capsys, text):
    path = tmp_path / "notes.pt"
    path.write_bytes(text)
    fails_clearly(path, CheckpointError, "not a PyTorch checkpoint", capsys=capsys)


def test_legacy_format_is_refused_before_loading(tmp_path, capsys, tiny_state_dict):
    path = tmp_path / "legacy.pt"
    torch.save({"net_model": tiny_state_dict()}, path, _use_new_zipfile_serialization=False)
    fails_clearly(path, CheckpointError, "legacy", "PyTorch < 1.6", capsys=capsys)


def test_zip_without_a_pickle_is_not_a_checkpoint(tmp_path, capsys):
    path = tmp_path / "other.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("readme.txt", "hello")
    fails_clearly(path, CheckpointError, "without 'data.pkl'", capsys=capsys)


# ------------------------------------------------------------- 2. native config values --

BAD_CONFIG = [
    ("ch", 8.0, "ch must be an integer (got 8.0"),
    ("ch", "8", "ch must be an integer (got '8'"),
    ("ch_mult", "1,2", "ch_mult must be a non-empty list"),
    ("ch_mult", "12", "ch_mult must be a non-empty list"),  # int() per character gave (1, 2)
    ("ch_mult", [1.5, 2], "ch_mult[0] must be an integer (got 1.5"),  # int(1.5) gave 1
    ("ch_mult", [1, True], "ch_mult[1] must be an integer (got True"),
    ("snn_steps", 1.5, "snn_steps must be an integer (got 1.5"),
    ("snn_steps", True, "snn_steps must be an integer (got True"),
    ("img_size", 8.0, "img_size must be an integer"),
    ("num_res_blocks", True, "num_res_blocks must be an integer"),
    ("tsm", 0, "tsm must be true or false (got 0"),
    ("tsm", "false", "tsm must be true or false"),
    ("img_size", 2**20, "img_size 1,048,576 exceeds the limit 1,024"),
    ("snn_steps", 10**6, "snn_steps 1,000,000 exceeds the limit 256"),
    ("ch", 10**6, "ch 1,000,000 exceeds the limit 1,024"),
    ("diffusion_steps", 10**9, "diffusion_steps 1,000,000,000 exceeds the limit 100,000"),
    ("num_res_blocks", 1000, "num_res_blocks 1,000 exceeds the limit 16"),
    ("ch_mult", [1] * 20, "ch_mult has 20 levels, more than the limit 8"),
]


@pytest.mark.parametrize("key, value, message", BAD_CONFIG,
                         ids=[f"{k}={str(v)[:12]}" for k, v, _ in BAD_CONFIG])
def test_native_config_values_are_strict(tmp_path, capsys, native, tiny_config, key, value,
                                         message):
    path = native(tmp_path / "cfg.pt", config={**tiny_config.to_dict(), key: value})
    fails_clearly(path, ConfigError, "'config'", message, capsys=capsys)


def test_native_config_with_a_missing_key_is_refused(tmp_path, capsys, native, tiny_config):
    cfg = tiny_config.to_dict()
    del cfg["snn_steps"]  # used to default to 4 without a word
    path = native(tmp_path / "cfg.pt", config=cfg)
    fails_clearly(path, ConfigError, "['snn_steps'] missing", capsys=capsys)


@pytest.mark.parametrize("version", [-1, 0, True, "1", 1.0, None])
def test_native_format_version_must_be_a_known_integer(tmp_path, capsys, native, version):
    path = native(tmp_path / "v.pt", format_version=version)
    fails_clearly(path, CheckpointError, f"format_version {version!r} is not supported",
                  capsys=capsys)


@pytest.mark.parametrize("meta, message", [
    ("abc", "'meta' is a str"),
    ([1, 2], "'meta' is a list"),
    (None, "'meta' is a NoneType"),
    ({"x": torch.zeros(2)}, "holds a Tensor at 'x'"),
    ({"a": {"b": (1, 2)}}, "holds a tuple at 'a.b'"),
    ({1: "x"}, "non-string key 1"),
    ({"dataset": 5}, "key 'dataset' is a int"),
    ({"train_config": "fast"}, "key 'train_config' is a str"),
])
def test_native_meta_must_be_a_json_dict(tmp_path, capsys, native, meta, message):
    path = native(tmp_path / "meta.pt", meta=meta)
    fails_clearly(path, CheckpointError, message, capsys=capsys)


def _safetensors(path: Path, cfg, sd: dict, **metadata: str) -> Path:
    """A safetensors checkpoint of the model ``cfg`` with weights ``sd``, with any metadata entry
    replaced."""
    from safetensors.torch import save_file

    md = {"format": FORMAT_TAG, "format_version": "1", "config": json.dumps(cfg.to_dict()),
          "meta": "{}", **metadata}
    save_file({f"net_model.{k}": v.contiguous() for k, v in sd.items()}, str(path),
              metadata=md)
    return path


@pytest.mark.parametrize("metadata, error, message", [
    ({"format_version": "-1"}, CheckpointError, "'format_version' is '-1'"),
    ({"format_version": " 1"}, CheckpointError, "'format_version' is ' 1'"),
    # a callable entry is the tiny model's config -> the entry
    ({"config": lambda cfg: json.dumps({**cfg.to_dict(), "ch": 8.0})}, ConfigError,
     "ch must be an integer"),
    ({"config": "[" * 100_000}, CheckpointError, "metadata 'config' is not valid JSON"),
    ({"meta": '"abc"'}, CheckpointError, "'meta' is a str"),
])
def test_safetensors_metadata_is_strict(tmp_path, capsys, tiny_config, tiny_state_dict, metadata,
                                        error, message):
    metadata = {k: v(tiny_config) if callable(v) else v for k, v in metadata.items()}
    path = _safetensors(tmp_path / "m.safetensors", tiny_config, tiny_state_dict(), **metadata)
    fails_clearly(path, error, message, capsys=capsys)


# --------------------------------------------------------- 3. sparse and meta tensors --

@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")
@pytest.mark.parametrize("make, message", [
    (lambda t: t.to_sparse(), "has layout torch.sparse_coo"),
    (lambda t: t.to_sparse_csr() if t.dim() == 2 else t.reshape(1, -1).to_sparse_csr(),
     "has layout torch.sparse_csr"),
    (lambda t: torch.empty_like(t, device="meta"), "is a meta-device tensor"),
])
def test_sparse_and_meta_tensors_are_refused(tmp_path, capsys, native, tiny_state_dict, make,
                                            message):
    sd = tiny_state_dict()
    sd["bn.weight"] = make(sd["bn.weight"])
    path = native(tmp_path / "s.pt", sd=sd)
    fails_clearly(path, CheckpointError, "'net_model.bn.weight'", message, capsys=capsys)


# ----------------------------------------------------------------------- 4. TSM gains --

def _reference_tsm(path: Path, tsmp, tsm_sd: dict) -> Path:
    """A reference-layout checkpoint of a TSM model's ``tsm_sd`` with every ``.tsmp`` replaced
    by ``tsmp()``."""
    sd = {k: (tsmp() if k.endswith(".tsmp") else v) for k, v in tsm_sd.items()}
    torch.save({"net_model": sd}, path)
    return path


@pytest.mark.parametrize("tsmp, shape", [
    (lambda: torch.tensor(1.0), "[]"),  # 0-d: used to be an IndexError
    (lambda: torch.ones(0, 1, 1, 1, 1), "[0, 1, 1, 1, 1]"),  # used to name neither file nor key
    (lambda: torch.ones(2, 3, 1, 1, 1), "[2, 3, 1, 1, 1]"),
])
def test_malformed_tsmp_names_the_key(tmp_path, capsys, tsm_config, tiny_state_dict, tsmp, shape):
    path = _reference_tsm(tmp_path / "tsm.pt", tsmp, tiny_state_dict(tsm_config))
    msg = fails_clearly(path, CheckpointMismatchError, ".tsmp' has shape " + shape,
                        "[T_snn, 1, 1, 1, 1]", capsys=capsys)
    assert "[net_model]" in msg


def test_tsm_stored_snn_steps_disagreeing_with_tsmp_names_both(tmp_path, capsys, native,
                                                               tsm_config, tiny_state_dict):
    path = native(tmp_path / "tsm.pt", cfg=tsm_config.replace(snn_steps=3),
                  sd=tiny_state_dict(tsm_config))
    msg = fails_clearly(path, CheckpointMismatchError,
                        "'snn_steps' is 3 in the stored config but 2 from the weights",
                        "T_snn comes from the shape [2, 1, 1, 1, 1] of '", capsys=capsys)
    assert "--snn-steps" not in msg  # the user passed no option


# ------------------------------------------------------------------------ 5. dtypes --

@pytest.mark.parametrize("dtype", [torch.int32, torch.int64, torch.bool, torch.complex64,
                                   torch.uint8, torch.float8_e4m3fn])
def test_non_float_weights_are_refused(tmp_path, capsys, native, tiny_state_dict, dtype):
    sd = tiny_state_dict()
    sd["downblocks.0.conv1.weight"] = sd["downblocks.0.conv1.weight"].to(dtype)
    path = native(tmp_path / "d.pt", sd=sd)
    fails_clearly(path, CheckpointError, f"downblocks.0.conv1.weight ({dtype})", capsys=capsys)


def test_num_batches_tracked_is_int64_and_half_precision_loads(tmp_path, tiny_config,
                                                              tiny_state_dict):
    sd = {k: (v if k.endswith("num_batches_tracked") else v.to(torch.bfloat16))
          for k, v in tiny_state_dict().items()}
    assert any(k.endswith("num_batches_tracked") and v.dtype == torch.int64 for k, v in sd.items())
    torch.save({"net_model": sd}, tmp_path / "bf16.pt")
    ck = read_checkpoint(tmp_path / "bf16.pt", snn_steps=2, img_size=8)
    assert ck.config == tiny_config and ck.state_dict["bn.weight"].dtype == torch.bfloat16
    sd["bn.num_batches_tracked"] = sd["bn.num_batches_tracked"].float()
    torch.save({"net_model": sd}, tmp_path / "nbt.pt")
    with pytest.raises(CheckpointError, match=r"bn\.num_batches_tracked \(torch\.float32\)"):
        read_checkpoint(tmp_path / "nbt.pt", snn_steps=2, img_size=8)


def test_safetensors_integer_weights_are_refused(tmp_path, capsys, tiny_config, tiny_state_dict):
    from safetensors.torch import save_file

    sd = tiny_state_dict()
    sd["conv.weight"] = sd["conv.weight"].to(torch.int16)
    path = tmp_path / "i.safetensors"
    save_file({f"net_model.{k}": v.contiguous() for k, v in sd.items()}, str(path),
              metadata={"format": FORMAT_TAG, "format_version": "1",
                        "config": json.dumps(tiny_config.to_dict()), "meta": "{}"})
    fails_clearly(path, CheckpointError, "conv.weight (torch.int16)", capsys=capsys)


# ------------------------------------------------------------- 6. resource exhaustion --

def _rezip(src: Path, dst: Path, *, pad_pickle: int = 0) -> Path:
    """``src``'s entries deflated into ``dst``; ``pad_pickle`` zero bytes after the pickle's
    STOP (the unpickler ignores them): a small file whose data.pkl inflates."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename.endswith("/data.pkl"):
                data += bytes(pad_pickle)
            zout.writestr(info.filename, data)
    return dst


def test_deflated_checkpoint_within_the_limits_loads(tmp_path, tiny_checkpoint, tiny_config):
    src = tiny_checkpoint
    path = _rezip(src, tmp_path / "deflated.pt", pad_pickle=1000)
    assert read_checkpoint(path).config == tiny_config


def test_pickle_that_inflates_beyond_the_limit_is_refused(tmp_path, capsys, tiny_checkpoint):
    src = tiny_checkpoint
    path = _rezip(src, tmp_path / "bomb.pt", pad_pickle=40 << 20)
    assert path.stat().st_size < 1 << 20  # 40 MiB of pickle from a small file
    fails_clearly(path, CheckpointError, "data.pkl' declares", f"{ckpt_mod.MAX_PICKLE_BYTES:,}",
                  "MAX_PICKLE_BYTES", capsys=capsys)


def test_entries_declaring_more_than_the_limit_are_refused(tmp_path, monkeypatch, capsys,
                                                           tiny_state_dict):
    torch.save({"net_model": {**tiny_state_dict(), "extra": torch.zeros(1 << 20)}},
               tmp_path / "m.pt")
    path = _rezip(tmp_path / "m.pt", tmp_path / "big.pt")
    assert path.stat().st_size < 1 << 20  # 4 MiB of storage, deflated
    monkeypatch.setattr(ckpt_mod, "MAX_CHECKPOINT_BYTES", 2 << 20)
    fails_clearly(path, CheckpointError, "the zip entries declare", "more than the 2,097,152",
                  "MAX_CHECKPOINT_BYTES", capsys=capsys)


def test_oversized_zip_directory_is_refused(tmp_path, monkeypatch, capsys, tiny_checkpoint):
    path = tiny_checkpoint
    monkeypatch.setattr(ckpt_mod, "MAX_ZIP_DIRECTORY_BYTES", 100)
    fails_clearly(path, CheckpointError, "central directory declares", "MAX_ZIP_DIRECTORY_BYTES",
                  capsys=capsys)


def test_zip_directory_size_is_read_from_the_end_records(tmp_path, tiny_checkpoint):
    path = tiny_checkpoint  # torch writes zip64 records
    with zipfile.ZipFile(path) as z:
        names = sum(len(i.filename.encode()) + len(i.extra) + len(i.comment)
                    for i in z.infolist())
        count = len(z.infolist())
    with open(path, "rb") as f:
        assert ckpt_mod._zip_directory_bytes(f, path.stat().st_size) == 46 * count + names
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("a/data.pkl", b"x")
    data = buf.getvalue()
    assert ckpt_mod._zip_directory_bytes(io.BytesIO(data), len(data)) == 46 + len("a/data.pkl")
    cut = data[:-10]  # no end record
    assert ckpt_mod._zip_directory_bytes(io.BytesIO(cut), len(cut)) is None


@pytest.mark.parametrize("where", ["tsmp", "weight", "optimizer"])
def test_expanded_stride0_tensors_are_refused(tmp_path, capsys, tsm_config, tiny_state_dict,
                                              where):
    """torch.save keeps an expanded tensor's one-element storage: a few bytes in the file that
    anything materializing them (isfinite, load_state_dict, contiguous) turns into gigabytes."""
    if where == "tsmp":  # T_snn of 10**7 from a few bytes: used to be accepted
        sd = {k: (torch.ones(1, 1, 1, 1, 1).expand(10**7, 1, 1, 1, 1) if k.endswith(".tsmp")
                  else v) for k, v in tiny_state_dict(tsm_config).items()}
        key, payload = "net_model.conv.tsmp", {"net_model": sd}
    elif where == "weight":
        sd = tiny_state_dict()
        sd["bn.weight"] = torch.ones(1).expand(8)
        key, payload = "net_model.bn.weight", {"net_model": sd}
    else:
        payload = {"net_model": tiny_state_dict(),
                   "train_state": {"optimizer": {"state": {0: {
                       "exp_avg": torch.zeros(1).expand(10**9, 10**3)}}}}}
        key = "train_state.optimizer.state.0.exp_avg"
    torch.save(payload, tmp_path / "x.pt")
    path = tmp_path / "x.pt"
    assert path.stat().st_size < 1 << 20  # the model; the expanded tensor is a few bytes
    fails_clearly(path, CheckpointError, f"'{key}' is an expanded view", capsys=capsys)
    with pytest.raises(CheckpointError, match="expanded view"):
        read_train_state(path)


# ------------------------------------------------------------------- 7. named pipes --

@pytest.mark.parametrize("name", ["pipe.pt", "pipe.safetensors"])
def test_named_pipe_is_refused_without_blocking(capsys, fifo, name):
    path = fifo(name)
    fails_clearly(path, CheckpointError, "is a named pipe", capsys=capsys)
    with pytest.raises(CheckpointError, match="is a named pipe"):
        read_train_state(path)


def test_oversized_checkpoint_file_is_refused(tmp_path, monkeypatch, capsys, tiny_checkpoint):
    path = tiny_checkpoint
    monkeypatch.setattr(ckpt_mod, "MAX_CHECKPOINT_BYTES", 1000)
    fails_clearly(path, CheckpointError, "more than the 1,000 bytes", capsys=capsys)


def test_dev_zero_is_refused(capsys):
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero")
    with pytest.raises(CheckpointError, match="/dev/zero: is a device"):
        read_checkpoint("/dev/zero")


# ------------------------------------------------------------ training state (--resume) --

def _train_state(**change):
    state = {"step": 2, "seconds": 1.5, "losses": [[1, 0.5]], "running_loss": 0.5,
             "optimizer": {"state": {}, "param_groups": [{"params": []}]},
             "rng": torch.Generator().get_state()}
    return {**state, **change}


@pytest.mark.parametrize("change, message", [
    ({"step": "2"}, "'train_state.step' is '2'"),
    ({"step": -1}, "'train_state.step' is -1"),
    ({"seconds": math.inf}, "'train_state.seconds' is inf"),
    ({"running_loss": "x"}, "'train_state.running_loss' is 'x'"),
    ({"losses": [[1]]}, "'train_state.losses' is not a list of [step, loss] pairs"),
    ({"rng": torch.zeros(3)}, "'train_state.rng' is not a generator state"),
    ({"optimizer": []}, "'train_state.optimizer' is not an optimizer state_dict"),
])
def test_malformed_train_state_names_the_key(tmp_path, tiny_config, tiny_state_dict, change,
                                             message):
    save_checkpoint(tmp_path / "r.pt", tiny_config, tiny_state_dict(), ema_model=tiny_state_dict(),
                    train_state=_train_state(**change))
    with pytest.raises(CheckpointError, match="malformed training state") as info:
        read_train_state(tmp_path / "r.pt")
    assert str(tmp_path / "r.pt") in str(info.value) and message in str(info.value)

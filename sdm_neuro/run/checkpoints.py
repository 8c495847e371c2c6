"""What the jobs share: which model they run (a checkpoint, default: the shipped model; or an
export bundle's network), its deployment (calibrated, quantized graph), and the small option
helpers (threads, threshold, steps).

Notes about a checkpoint (how it was read, what was inferred) go to ``notify`` as they arise;
the CLI prints them as ``note: ...`` on stderr. Imports of the heavy modules are deferred to the
call, so the CLI starts fast and a job that stops at a check never loads them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..fileio import sha256_file

Notify = Callable[[str], None]


def as_path(value: str | Path | None) -> Path | None:
    return None if value is None else Path(value)


def set_threads(threads: int | None) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def or_one(value: float | None) -> float:
    """A threshold option as recorded in reports: unset means the model's own (1.0)."""
    return 1.0 if value is None else value


def check_steps(sampler: str, steps: int, diffusion_steps: int) -> None:
    """--steps against the model's diffusion steps, before any sampling or quantization."""
    from ..diffusion.samplers import model_call_steps

    model_call_steps(sampler, diffusion_steps, steps)


MOMENT_IMAGES = 100  # training images the analytic sampler's eps moments average over (one call)


def sampler_moments(sampler: str, steps: int, model, config, dataset: str | None,
                    data_dir: Path | None, *, progress: bool) -> dict[int, float] | None:
    """The analytic sampler's eps moments (None for the other samplers): the float ``model`` on
    the first :data:`MOMENT_IMAGES` training images of ``dataset``, noised at every step of the
    chain. The integer simulator samples with the float model's moments: the variance is a
    property of the sampler, estimated once, like the schedule."""
    if sampler != "analytic":
        return None
    from tqdm.auto import tqdm

    from ..data import load_dataset
    from ..diffusion import LinearSchedule, model_call_steps
    from ..diffusion.analytic import eps_moments

    if model is None:
        raise UsageError("--sampler analytic estimates its variance with the float model; give "
                         "the checkpoint.")
    if dataset is None:
        raise UsageError("--sampler analytic estimates its variance on the training images; "
                         "pass --dataset.")
    images = load_dataset(dataset, split="train", data_dir=data_dir,
                          img_size=config.img_size).images[:MOMENT_IMAGES]
    chain = model_call_steps(sampler, config.diffusion_steps, steps)[:-1]
    return eps_moments(model, LinearSchedule(num_steps=config.diffusion_steps), chain, images,
                       batch=MOMENT_IMAGES,
                       progress=lambda ts: tqdm(ts, desc="analytic variance", unit="step",
                                                disable=not progress, dynamic_ncols=True))


def float_denoiser(model, device: str):
    from ..diffusion import on_device
    from ..training import resolve_device

    return on_device(model, resolve_device(device))


@dataclass(frozen=True)
class ModelOptions:
    """The model a job runs: ``checkpoint`` (None: the shipped default model) read with
    ``weights`` / ``snn_steps`` / ``img_size``, or the network of an export ``bundle``; for a
    deployment, ``threshold_scale`` and ``threshold_map`` (per layer, after the global scale),
    the training set (``dataset``, ``data_dir``) that calibrates the quantization, the
    calibration ``seed`` and its number of images."""

    checkpoint: Path | None = None
    weights: str = "auto"
    snn_steps: int | None = None
    img_size: int | None = None
    threshold_scale: float | None = None
    dataset: str | None = None
    data_dir: Path | None = None
    seed: int = 0
    bundle: Path | None = None
    notify: Notify | None = None
    calibration_images: int | None = None  # None: the compiler's default
    progress: bool = False  # a progress bar over the calibration's float run
    threshold_map: Any = None  # a sdm_neuro.models.thresholds.ThresholdMap
    # The job's calibrations, one per model: both mappings of a model share its float run.
    _calibrations: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Refused, not ignored, where nothing is calibrated (either kind of bundle, a NIR graph).
        if self.calibration_images is not None and self.bundle is not None:
            raise UsageError("--calibration-images: a bundle's quantization was fixed at export; "
                             "export again with --calibration-images.")
        if self.threshold_map is not None and self.is_nir:
            raise UsageError(f"{self.checkpoint}: --threshold-map names U-Net layers; a NIR "
                             "graph takes --threshold-scale.")
        if self.calibration_images is not None and self.is_nir:
            raise UsageError(f"{self.checkpoint}: --calibration-images calibrates a U-Net "
                             "checkpoint; a NIR graph is calibrated on --input (or --num random "
                             "spike samples).")

    def note(self, text: str) -> None:
        if self.notify is not None:
            self.notify(text)

    @property
    def calibration_count(self) -> int:
        """Training images the quantization is calibrated on (``--calibration-images``)."""
        from ..compiler.pipeline import CALIBRATION

        return CALIBRATION["images"] if self.calibration_images is None else \
            self.calibration_images

    def calibration(self, model, images):
        """``model``'s :class:`~sdm_neuro.compiler.calibrate.Calibration` on inputs drawn from
        ``images`` (a dataset's training images); the same object for the same model."""
        from ..compiler.calibrate import Calibration
        from ..compiler.pipeline import calibration_inputs

        if id(model) not in self._calibrations:
            self._calibrations[id(model)] = Calibration(model, calibration_inputs(
                images, count=self.calibration_count, seed=self.seed), progress=self.progress)
        return self._calibrations[id(model)]

    @property
    def is_nir(self) -> bool:
        """The checkpoint is a NIR graph (a feed-forward SNN), not a U-Net."""
        return self.checkpoint is not None and self.checkpoint.suffix == ".nir"


def apply_thresholds(options: Any, model) -> None:
    """``options.threshold_scale`` (a finite value > 0, or None: the model's own) sets every
    firing threshold of ``model``, then ``options.threshold_map`` (if any) those it names."""
    from ..models.thresholds import apply_threshold_map

    if options.threshold_scale is not None:
        model.set_threshold(options.threshold_scale)
    if getattr(options, "threshold_map", None) is not None:
        apply_threshold_map(model, options.threshold_map)


def threshold_map_option(value: Any):
    """``--threshold-map`` (a JSON file or ``halves:A,B`` / ``depth:A,B``) as a ThresholdMap."""
    from ..models.thresholds import ThresholdMap, parse_threshold_map

    if value is None or isinstance(value, ThresholdMap):
        return value
    return parse_threshold_map(str(value))


def thresholds_record(options: Any, graph) -> dict[str, Any]:
    """What reports and manifests record of the thresholds: the global scale, and with a map,
    the map and every population's threshold in ``graph``."""
    out: dict[str, Any] = {"threshold_scale": or_one(options.threshold_scale)}
    if getattr(options, "threshold_map", None) is not None:
        out["threshold_map"] = options.threshold_map.to_dict()
        out["thresholds"] = {p.name: p.threshold for p in graph.populations}
    return out


def load(options: ModelOptions):
    """(model, :class:`~sdm_neuro.checkpoint.Checkpoint`) of ``options.checkpoint``, default the
    shipped model; the checkpoint's notes go to ``options.notify``."""
    from ..checkpoint import load_model

    path = options.checkpoint
    if path is None:
        from ..assets import default_model_path

        path = default_model_path()
    model, ckpt = load_model(path, weights=options.weights, snn_steps=options.snn_steps,
                             img_size=options.img_size)
    for note in ckpt.notes:
        options.note(note)
    return model, ckpt


def check_mapping(mapping: str) -> None:
    from ..ir.graded import MAPPINGS

    if mapping not in MAPPINGS:
        raise UsageError(f"unknown mapping {mapping!r} (one of {', '.join(MAPPINGS)}).")


def deploy(options: ModelOptions, sampling: tuple[str, int] | None = None,
           mapping: str = "composed"):
    """(model, checkpoint, dataset, training set, graph): the checkpoint (with the threshold
    scale), its dataset's training images and the quantized deployment graph calibrated on
    them: a :class:`~sdm_neuro.ir.graph.DeployGraph` (``mapping`` "composed") or a
    :class:`~sdm_neuro.ir.graded.GradedGraph` ("graded"). ``sampling``: (sampler, steps) to
    check against the model before the calibration."""
    from ..compiler.pipeline import build_integer_graph
    from ..compiler.quantize_graded import build_graded_graph
    from ..data import load_dataset

    check_mapping(mapping)

    model, ckpt = load(options)
    if sampling is not None:
        check_steps(*sampling, ckpt.config.diffusion_steps)
    apply_thresholds(options, model)
    dataset = options.dataset or ckpt.meta.get("dataset")
    if dataset is None:
        raise UsageError(f"{ckpt.path}: the checkpoint does not say which dataset it was trained "
                         "on; pass --dataset (its training images calibrate the quantization).")
    train = load_dataset(dataset, split="train", data_dir=options.data_dir,
                         img_size=ckpt.config.img_size)
    build = build_graded_graph if mapping == "graded" else build_integer_graph
    graph = build(model, options.calibration(model, train.images))
    return model, ckpt, dataset, train, graph


def from_bundle(options: ModelOptions):
    """(float model or None, checkpoint path, dataset, graph) of ``options.bundle``: the network
    comes from the bundle alone; the float model, for the comparison, from the checkpoint
    given, else from the one the manifest names if it is still there, unchanged."""
    from ..checkpoint import load_model
    from ..export.bundle import bundle_format, read_bundle
    from ..export.graded_bundle import GRADED_BUNDLE_FORMAT, read_graded_bundle

    if options.threshold_scale is not None or options.threshold_map is not None:
        raise UsageError("--threshold-scale / --threshold-map: a bundle's thresholds were fixed "
                         "at export; export again with them.")
    graded = bundle_format(options.bundle) == GRADED_BUNDLE_FORMAT
    graph, manifest = (read_graded_bundle if graded else read_bundle)(options.bundle)
    src = manifest.get("checkpoint") or {}
    path = options.checkpoint
    if path is None and src.get("path") and Path(src["path"]).is_file() \
            and sha256_file(Path(src["path"])) == src.get("sha256"):
        path = Path(src["path"])
    model = None
    if path is not None:
        model, _ = load_model(path, weights=options.weights, snn_steps=graph.config.snn_steps,
                              img_size=graph.config.img_size)
        quant = manifest.get("quantization") or {}
        if quant.get("threshold_scale", 1.0) != 1.0:
            model.set_threshold(quant["threshold_scale"])
        model.set_thresholds(quant.get("thresholds") or {})  # (exported with --threshold-map)
    else:
        options.note(f"{options.bundle}: its checkpoint is not available; simulating without "
                     "the float comparison.")
    return model, path or src.get("path"), options.dataset or manifest.get("dataset"), graph

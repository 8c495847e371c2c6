"""The run layer: one function per user job, each returning a typed result and owning the files
it writes. The CLI (``sdm_neuro.cli``) is a thin layer over these; nothing else in the package
imports them.

    from sdm_neuro.run import simulate
    res = simulate(steps=100, out="out/sim")      # res.report is out/sim/simulate.json

Every job takes keyword arguments with the CLI's defaults and checks its output location before
any work (a :class:`~sdm_neuro.errors.UsageError`). Jobs that read a checkpoint take ``notify``,
called with each note about it (the CLI prints them as ``note: ...`` on stderr).

Modules: ``outputs`` (output-location checks), ``checkpoints`` (which model a job runs, its
deployment, shared option helpers), ``feedforward`` (NIR graphs / feed-forward bundles: input,
float vs integer run), ``summary`` (info, profiles), ``sampling`` (sample), ``evaluation``
(evaluate), ``simulation`` (simulate, and simulate.json's writer and reader), ``energy``
(energy_report), ``exports`` (export, manifests, the constraint policy), ``tradeoffs``
(tradeoff: quality against energy per image), ``training`` (train, train_classifier).
"""

from ..training import TrainResult
from .energy import EnergyReportResult, energy_report
from .evaluation import EvaluateResult, evaluate
from .exports import ExportResult, export
from .outputs import OUTPUTS, check_outputs
from .sampling import SampleResult, sample
from .simulation import (
    FeedForwardSimulateResult,
    SimulateResult,
    read_simulate_report,
    simulate,
)
from .tradeoffs import TradeoffResult, tradeoff
from .summary import InfoResult, ProfilesResult, info, model_summary, profiles
from .training import TrainClassifierResult, train, train_classifier

__all__ = [
    "OUTPUTS", "EnergyReportResult", "EvaluateResult", "ExportResult",
    "FeedForwardSimulateResult", "InfoResult", "ProfilesResult", "SampleResult",
    "SimulateResult", "TradeoffResult", "TrainClassifierResult", "TrainResult",
    "check_outputs", "energy_report", "evaluate", "export", "info", "model_summary", "profiles",
    "read_simulate_report", "sample", "simulate", "tradeoff", "train", "train_classifier",
]

"""Sample quality for ``sdm-neuro evaluate``: a project-trained classifier whose features give
FID / KID and whose softmax gives recognisability, Inception FID from local weights, and the
statistics behind them."""

from .classifier import Classifier, ClassifierConfig, TrainedClassifier, load_classifier
from .evaluate import evaluate_images, get_classifier
from .quality import QualityReport, QualityRow, evaluate_sets, recognisability
from .stats import fid_from_features, frechet_distance, kid

__all__ = ["Classifier", "ClassifierConfig", "QualityReport", "QualityRow", "TrainedClassifier",
           "evaluate_images", "evaluate_sets", "fid_from_features", "frechet_distance",
           "get_classifier", "kid", "load_classifier", "recognisability"]

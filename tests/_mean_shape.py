"""The mean-shape baseline: every image predicted as the mean training shape of its category."""
import numpy as np

from fashion_gluon.data.annotations import Annotations
from fashion_gluon.metrics import normalized_error


def mean_shape_ne(train: Annotations, truth: Annotations) -> float:
    """NE of predicting, for each row of ``truth``, the mean over ``train``'s rows of the same
    category of the annotated (v >= 0) points."""
    categories = np.asarray(train.categories)
    points = np.where(train.keypoints[..., 2:] >= 0, train.keypoints[..., :2], np.nan)
    with np.errstate(invalid="ignore"), np.testing.suppress_warnings() as quiet:
        quiet.filter(RuntimeWarning, "Mean of empty slice")  # the keypoints outside a category
        means = {c: np.nan_to_num(np.nanmean(points[categories == c], axis=0)) for c in set(train.categories)}
    pred = np.stack([means[c] for c in truth.categories])
    return normalized_error(pred, truth.keypoints, truth.categories, truth.schema)["ne"]

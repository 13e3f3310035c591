"""The data layer: dataset readers (folders → labelled samples), splits and image transforms.

It knows nothing of models or training. Image decoding lives in :mod:`agegender.data.images`.
"""

from __future__ import annotations

from agegender.data.readers import DATASETS, describe_datasets, read_dataset

__all__ = ["DATASETS", "describe_datasets", "read_dataset"]

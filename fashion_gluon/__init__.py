"""fashion_gluon: clothing keypoint detection (FashionAI 2018) with MXNet/Gluon."""
from . import schema
from .errors import ConfigError, DataError, FashionGluonError

__version__ = "0.1.0"
__all__ = ["schema", "DataError", "ConfigError", "FashionGluonError", "__version__"]

"""datafactory: the top layer -- the ``datafactory`` CLI and the embedded demo flow (DatasetGAN: planned).

It may import ``loaders``, ``augment`` and ``pipelines``; nothing below imports it.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("datafactory-toolkit")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]

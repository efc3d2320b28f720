"""VisionFlow: a live 3-D view of AI agent swarms and knowledge graphs."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("visionflow")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

"""torchgate: serve trained PyTorch models over HTTP."""

__version__ = "0.1.0"

"""sidecar-chaos: chaos experiments for service proxies."""

__version__ = "0.1.0"

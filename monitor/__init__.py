"""cvmon: model-observability and SLO service for computer-vision models.

Importing :mod:`monitor` (and :mod:`monitor.sdk`, :mod:`monitor.wire`, :mod:`monitor.metrics`)
needs only the standard library and numpy, so an inference process can carry it. Everything
under :mod:`monitor.server` needs ``pip install 'cvmon[server]'``.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]

"""The cvmon SDK: log predictions and ground truth from an inference service.

Standard library and numpy only. Start with :class:`Client`; its docstring is the manual.
"""

from monitor.sdk._client import Client, Stats, TimedPrediction, embedding_sampled
from monitor.sdk._samples import SamplePolicy
from monitor.sdk._transport import HTTPTransport, MockTransport, Request, Response, Transport
from monitor.wire import Resources

__all__ = [
    "Client",
    "HTTPTransport",
    "MockTransport",
    "Request",
    "Resources",
    "Response",
    "SamplePolicy",
    "Stats",
    "TimedPrediction",
    "Transport",
    "embedding_sampled",
]

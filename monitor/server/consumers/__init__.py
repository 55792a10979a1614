"""Broker consumers: ingest entry points beside the HTTP API.

``cvmon consume nats`` (:mod:`.jetstream`) and ``cvmon consume mqtt`` (:mod:`.mqtt`) take
messages that carry ingest batches, and store them through the ingest service (:mod:`.sink`)
with the guarantees of :mod:`.pipeline`. See docs/streaming.md.
"""

"""The domain logic of the server, between the entry points and the store.

Every function here takes the SQLAlchemy ``Connection`` it works over and never commits: the
caller (an API route, a job, a CLI command, a stream consumer) owns the transaction. The
exception is :mod:`.ingest`'s ``write_*`` helpers, which open the one transaction a batch is
stored in.

==================  ===========================================================================
windows, weeks      window arithmetic: one ``hour_floor``, aligned and rolling windows, ISO weeks
states, decode      stored rows -> mergeable per-slice states -> named metric points
state_cache         decoded hour states kept between evaluate runs (owned by the worker)
evaluation          hour states, late labels, windows and their metric rows
history, latest     the metric history, confusion matrices, what /metrics reads
drift*, models      drift plans and references, the model registry
ingest              validated records -> stored rows, in the lock order its docstring gives
keys, reports,      API keys, stored weekly reports, incidents and SLO sums, job bookkeeping,
incidents, ...      retention
==================  ===========================================================================
"""

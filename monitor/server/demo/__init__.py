"""``cvmon demo``: a real digits classifier, served through the onnxruntime adapter, streaming
predictions, embeddings, latencies and delayed ground truth into a running cvmon, with one camera
drifting midway. The click command lives in :mod:`monitor.server.cli.demo`."""

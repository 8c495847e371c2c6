"""Sampling spread over Ray workers (a local instance or a cluster), in shards written to disk
as they finish: resumable, and identical to one process bit for bit."""

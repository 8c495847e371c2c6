"""The run layer: one function per user job."""

"""Energy and operation accounting: the papers' convention, a fuller per-profile model,
NeuroBench metrics."""

"""Benchmarks behind `otce-ray bench ...`: each prints figures against a peer run side by side, JSON last.

``stress`` is the corpus of feature clouds that stalled Sinkhorn on real stores, which ``bench ot --corpus stress``
and the engine's tests solve."""

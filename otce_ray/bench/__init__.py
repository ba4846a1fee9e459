"""Benchmarks behind `otce-ray bench ...`: each prints figures against a peer run side by side, JSON last."""

"""Benchmarks of Sendarix beside reference runs; ``benchmarks/run`` runs them."""

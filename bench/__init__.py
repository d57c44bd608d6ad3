"""Benchmark of kubetest's load engine against wrk, hey and Locust, on loopback only.

Entry point: ``python -m bench.engine_bench [--quick] [--out bench/results]`` (``make bench``).
Every server it measures is started by the benchmark itself on 127.0.0.1 and stopped by it;
every load it sends is bounded in time and count.
"""

"""Peer-framework rows of the benchmark: bytewax (:mod:`bench.peers.bytewax_row`), Quix Streams (later)."""

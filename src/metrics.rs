//! Prometheus metrics (exported at `/metrics` once the operations work lands).

"""The HTTP faces of cadence, each on its own listener: the internal status endpoint (health,
Prometheus metrics, the rate report) now, and later the public pre-read form. Nothing here is
needed for a pass; they only read."""

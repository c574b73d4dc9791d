"""What both platforms share: the Envoy configuration layer, the CA and token issuer, the demo
workload and service, and the PromQL counter source.

``platforms.local`` and ``platforms.kubernetes`` may import this package; it imports neither.
"""

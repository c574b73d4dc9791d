"""A fake Kubernetes API server that speaks the real HTTP API over a socket (tests only).

:mod:`.api` serves it (REST, watch, and exec / port-forward websockets via :mod:`.streams`),
:mod:`.store` keeps the objects, :mod:`.controllers` plays the Deployment and DaemonSet
controllers (surge-first rollouts, DaemonSet status), :mod:`.admission` Istio's webhooks
that fail closed while istiod is down, :mod:`.rules` refuses what a real cluster refuses
where our code depends on it, :mod:`.podexec` plays the pods' commands and proxies (Istio's
only with the stats their matcher includes), :mod:`.istio` requests through Istio's data plane.
"""

"""A fake Kubernetes API server that speaks the real HTTP API over a socket (tests only).

:mod:`.api` serves it, :mod:`.store` keeps the objects, :mod:`.rules` refuses what a real
cluster refuses where our code depends on it, :mod:`.podexec` plays exec for pods.
"""

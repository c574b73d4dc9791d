"""Test doubles that tests, benchmarks and plugin authors may use; never on a run's path.

* :mod:`chaos.testing.fake_platform`: an in-memory platform (the port's fake);
* :mod:`chaos.testing.fake_traffic`: scripted traffic instead of Locust processes;
* :mod:`chaos.testing.fakekube`: a fake Kubernetes API server on loopback that the
  unmodified official client talks to;
* :mod:`chaos.testing.synthetic`, :mod:`chaos.testing.synthetic_run`: synthetic samples and
  whole synthetic run directories for analysis, report and benchmark tests.

Only tests, ``chaos.bench`` and a user's own test code import this package.
"""

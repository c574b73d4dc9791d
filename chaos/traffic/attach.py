"""A locustfile with no users: loaded next to a user's own locustfile to record its requests.

The runner passes ``-f <this file>,<user file>``; importing the recorder attaches it.
"""

from __future__ import annotations

import chaos.traffic.recorder  # noqa: F401  (registers the sample recorder)

"""Imported ahead by a repo2docker started before its build (`warm_repo2docker`): repo2docker
looks its engine up among the installed distributions' entry points each time it makes an
engine (twice a build, ~15 ms a scan of every distribution's metadata). Here that scan is
done once, while the launcher waits, and remembered for the process's one build: nothing is
installed into the builder's environment while a build runs.
"""

from __future__ import annotations

import functools

import entrypoints

ENGINES_GROUP = "repo2docker.engines"

if not hasattr(entrypoints.get_group_named, "cache_info"):  # imported once per process anyway
    entrypoints.get_group_named = functools.lru_cache(maxsize=None)(entrypoints.get_group_named)
entrypoints.get_group_named(ENGINES_GROUP)

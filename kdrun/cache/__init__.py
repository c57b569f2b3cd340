"""The artefact cache: content-addressed folders (``store``) and the teacher-logit cache (``logits``)."""

from kdrun.cache.store import Cache, cache_key

__all__ = ["Cache", "cache_key"]

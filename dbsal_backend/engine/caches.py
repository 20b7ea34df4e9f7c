"""A bounded in-memory cache: least recently used first out, safe to share between threads.

Used for the superpixel maps and downloaded images kept in memory (bounded by count) and for
MC dropout's shared masks (bounded by bytes).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["LruCache"]

V = TypeVar("V")


class LruCache(Generic[V]):
    """A map that keeps the most recently used entries up to ``limit``.

    Parameters
    ----------
    limit : int
        The most the entries may weigh together; 0 keeps nothing. The newest entry always
        stays, even when it alone weighs more.
    weigh : callable, optional
        An entry's weight (for example its bytes); by default 1, so ``limit`` counts entries.

    Attributes
    ----------
    limit : int
        May be changed; it applies from the next :meth:`put`.
    """

    def __init__(self, limit: int, weigh: Callable[[V], int] | None = None) -> None:
        self.limit = limit
        self._weigh = weigh or (lambda value: 1)
        self._items: OrderedDict[Hashable, V] = OrderedDict()
        self._total = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> V | None:
        """The value of ``key`` (now the most recently used), or None."""
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: Hashable, value: V) -> None:
        """Keep ``value`` as the most recently used; drop the least recently used ones while
        the entries weigh more than ``limit``."""
        if self.limit <= 0:
            return
        with self._lock:
            self._discard(key)
            self._items[key] = value
            self._total += self._weigh(value)
            while self._total > self.limit and len(self._items) > 1:
                self._total -= self._weigh(self._items.popitem(last=False)[1])

    def pop(self, key: Hashable) -> None:
        """Forget ``key`` (if it is kept)."""
        with self._lock:
            self._discard(key)

    def _discard(self, key: Hashable) -> None:
        if key in self._items:
            self._total -= self._weigh(self._items.pop(key))

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._total = 0

    def __len__(self) -> int:
        return len(self._items)

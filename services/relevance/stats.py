"""Small running statistics whose fields are their whole state (the relevance model's checkpoint stores them).

River's own statistics keep their numbers in private (Rust) objects whose layout may change with any
release; these two are a few lines each, so a stored state reads back with any River version.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EWMean:
    """Exponentially weighted mean: the first value is the mean, then mean += fading × (x − mean).

    >>> m = EWMean(0.5)
    >>> m.update(2.0); m.update(4.0); m.get()
    3.0
    """

    fading: float
    mean: float | None = None  # None: never updated

    def update(self, x: float) -> None:
        self.mean = x if self.mean is None else self.mean + self.fading * (x - self.mean)

    def get(self, default: float = 0.0) -> float:
        return default if self.mean is None else self.mean


@dataclass
class FrugalQuantile:
    """The q-quantile of a stream in one number (Ma, Muthukrishnan & Sandler 2013, "Frugal streaming"):
    each value above the estimate raises it by step × q, each one below lowers it by step × (1 − q), so it
    settles where a fraction 1 − q of the values lie above. The step is `step` × `scale` (passed to update):
    a fixed size for a statistic in σ, a fraction of the flux's own size for a flux.

    >>> import random
    >>> rng, tracker = random.Random(1), FrugalQuantile(0.9, 0.05)
    >>> for _ in range(20000):
    ...     tracker.update(rng.random())
    >>> round(tracker.get(), 1)
    0.9
    """

    q: float
    step: float
    value: float | None = None  # None: never updated

    def update(self, x: float, scale: float = 1.0) -> None:
        if self.value is None:
            self.value = x
        elif x > self.value:
            self.value = min(x, self.value + self.step * scale * self.q)
        elif x < self.value:
            self.value = max(x, self.value - self.step * scale * (1.0 - self.q))

    def get(self) -> float | None:
        return self.value

"""Keep full garbage collections from stalling the policy node's callbacks.

The node shares one CPython process between the executor threads (callbacks) and the inference
worker. A full (generation 2) collection walks every tracked object while holding the GIL, so every
callback waits for it; after a model load that is millions of long-lived objects (one 34.6 ms pause
measured by ``bench/bench_policy_node.py`` on the 2-core dev machine). Freezing the heap after
configure moves those objects out of the collector's view; cleanup gives them back so a freed
model's reference cycles are still collected.

(A shorter GIL switch interval was tried too: no measurable difference under the dev machine's
load, so the CPython default stays; ``bench_policy_node.py --switch-interval-ms`` compares it.)
"""

from __future__ import annotations

import gc


def freeze_heap() -> None:
    """After a model load: collect once, then exclude every surviving object from later collections."""
    gc.collect()
    gc.freeze()


def unfreeze_heap() -> None:
    """After freeing a model: give frozen objects back to the collector so their cycles are freed."""
    gc.unfreeze()
    gc.collect()

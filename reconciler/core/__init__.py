"""The pure core: desired state, observed state, history, changes, backoff and the planner.

    sources ─▶ core.desired ─▶ core.planner ─▶ (daemon executes the steps) ─▶ runtime
                                   ▲
               core.observed ──────┘  (what the runtime reports, in runtime-neutral words)

Nothing here does I/O, reads a clock or imports anyio, a runtime or the daemon (an
import-linter contract holds it to that). Everything is a frozen value.
"""

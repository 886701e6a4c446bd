"""The runtime layer: the only code that touches the host (bundles, overlay, conmon, runc).

``types`` holds the values it returns and the ``Runtime`` protocol; ``runc`` is the real
adapter, ``fake`` an in-memory one for planner and controller tests.
"""

"""Resolution before the seam: a desired object becomes a fully-resolved ``InstanceSpec``.

    core.desired ─▶ resolve (images pulled and unpacked, image config applied, every
                     default filled, annotations and cgroup path made) ─▶ runtime.create

The runtime never imports ``images/``; everything it needs arrives in the spec.
"""

"""Images: a local OCI image store (skopeo in, umoci out) and image configs as defaults.

Beside the runtime layer: ``images.store`` keeps the images and their unpacked root
filesystems, ``images.apply`` (pure) turns an image config and a manifest into the
effective container. Import the modules (``from reconciler.images import store``); this
package imports nothing, so the pure half never drags in the subprocess half.
"""

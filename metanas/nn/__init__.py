"""The network layer: shared types (``types``), plain-function layers (``functional``)."""

"""The network layer: shared types (``types``), plain-function layers (``primitives``), NNX modules over them
(``modules``), and the one pure boundary from an NNX module to ``init`` / ``apply`` (``boundary``)."""

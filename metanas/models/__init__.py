"""Model modules for meta-learning (flax NNX): ``CNN4``; the MLP is ``metanas.nn.modules.MLP``."""

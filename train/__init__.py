"""Training stage: data loading (numpy only), model definitions, training, pruning, clustering, QAT.

Only `edgeport.core.data` is importable without TensorFlow; the other modules import it on use.
"""

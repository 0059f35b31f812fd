"""Export stage: convert a trained Keras model into deployable files, validate each, write manifest.json.

`export.targets` is the one table of targets (name -> converter); converters live one per module and
register themselves there. TensorFlow is imported only when a conversion runs.
"""

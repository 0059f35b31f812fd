"""The ground floor every stage stands on: errors, atomic files, the manifest, the input spec, the file
metadata schema and TF-free dataset loading.

Nothing here imports a stage (`edgeport.train`, `edgeport.export`, `edgeport.runtime`) or the roof
(`edgeport.cli`, `pipeline`, `serve`, `verify`); a test enforces it. Dependencies: stdlib, numpy, Pillow.
"""

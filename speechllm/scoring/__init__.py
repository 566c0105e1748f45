"""Scoring identical to NIST sclite: trn I/O, sclite-cost alignment, sys/pra/dtl reports, normalisers.

Modules: ``trn`` (trn and Kaldi text files, ids, speakers), ``words`` (tokens, ``-c`` characters),
``align`` (the alignment), ``table`` and ``report`` (sclite's reports), ``scorer`` (the sclite
pipeline), ``normalize`` (text normalisers), ``results`` (RESULTS.md).  Importing this package
does not import torch.
"""

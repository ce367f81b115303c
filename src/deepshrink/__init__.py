"""deepshrink: make convolutional networks really smaller and really faster.

Stages, one package each: ``data`` -> ``models`` -> ``train`` -> ``prune`` -> ``quant``
-> ``codec`` -> ``analysis``, tied together by ``pipeline``; ``cli`` is a thin layer on top.
"""

__version__ = "0.1.0"

"""``kubetest compare BASE NEW``: did this build get slower, or is it noise?

``stats`` (block bootstrap over time windows, the verdict rule), ``load`` (two sessions
read, their comparability checked), ``core`` (the metrics compared, ``compare.json``),
``figures`` and ``render`` (compare.html and compare.md).
"""

"""Kernel-fusion passes: the second tuple of the pipeline (``passes/pipeline.py``
``FUSION_PASSES``), run on the final (float or int8) graph just before lowering.

Each pass finds one pattern that a single kernel step can compute, checks its legality (in the
pass's docstring) and marks the graph (``ir/fusion.py``): the absorbed nodes get ``fused_into``,
the head node a ``fusion`` record naming what it absorbed. Lowering (``mobile_engine/planning``)
reads the marks; it never matches patterns itself. Legality that depends on which kernel a node
will run (a conv's kernel family, an int8 norm's kernel) is asked of a ``KernelTarget``
(``target.py``) that the compiler passes in, so passes import no kernels.
"""

"""Planning: the final (fusion-marked) IR -> kernel steps and a memory plan (compile time only).

``step.py`` holds the two plain tables (op -> float lowering, op -> int8 lowering) and
``lower_node``; ``families/`` the lowerings by kernel family (kernel choice, weight packing,
indirection tables); ``lower.py`` walks the graph and places tensors in the arena
(``arena.py``); ``target.py`` answers the kernel-fusion passes' questions about the kernels.
The runtime never imports this package.
"""

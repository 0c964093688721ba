"""Op families: each module registers its lowerings (compile time) and binders (load time)."""

"""The incident graph: run context, topology and compilation."""

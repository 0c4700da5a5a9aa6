"""Software-defined assets of fleetml, one module per stage of the lineage."""

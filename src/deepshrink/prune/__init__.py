"""Reserved for the prune stage (see the open issues)."""

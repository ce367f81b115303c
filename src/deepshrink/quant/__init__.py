"""Reserved for the quant stage (see the open issues)."""

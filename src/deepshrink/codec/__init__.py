"""Reserved for the codec stage (see the open issues)."""

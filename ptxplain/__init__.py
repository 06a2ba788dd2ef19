"""ptxplain."""

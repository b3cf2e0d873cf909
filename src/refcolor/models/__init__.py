"""Network modules of refcolor (paper sections 3.1-3.3)."""

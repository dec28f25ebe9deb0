"""The ``bayeshead`` command line."""

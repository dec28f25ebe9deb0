"""An example bayeshead plugin: one head registered through the ``bayeshead.heads`` entry point."""

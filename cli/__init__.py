"""The ``neurogate`` command line (``neurogate.cli.main``) and the file readers of its
embedded runs; the Kafka worker itself is ``neurogate.stream``."""

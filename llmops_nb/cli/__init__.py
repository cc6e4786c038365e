"""The ``llmops-nb`` command line: :func:`llmops_nb.cli.main.main` and one module per command group."""

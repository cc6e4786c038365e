"""The lifecycle steps, one module each: what a notebook, the CLI and the job call.

Each step takes the project config and a backend and returns the outputs it publishes to the
next step (plain JSON values): :func:`~llmops_nb.steps.register.register`,
:func:`~llmops_nb.steps.deploy.deploy`, :func:`~llmops_nb.steps.query.query` (the chain's
"serve" step, notebook 03_serve: it queries the deployed endpoint) and
:func:`~llmops_nb.steps.evaluate.evaluate`.
"""

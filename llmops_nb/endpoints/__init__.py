"""Create-or-update, wait for READY, get, list and delete serving endpoints.

One path over databricks-sdk for every workspace (the local one and Databricks), planned and
applied as the Databricks CLI's direct deploy does:

- :mod:`~llmops_nb.endpoints.normalize`: desired config and GET view in one comparable shape;
- :mod:`~llmops_nb.endpoints.plan`: which writes, in the CLI's order (tags, ai_gateway,
  config), removals included, immutable changes refused;
- :mod:`~llmops_nb.endpoints.apply`: :func:`deploy` makes them and waits;
- :mod:`~llmops_nb.endpoints.ops` and :mod:`~llmops_nb.endpoints.waits`;
- :mod:`~llmops_nb.endpoints.events`: what a deploy reports to a progress callback.
"""

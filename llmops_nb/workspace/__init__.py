"""The local workspace: a server on 127.0.0.1 speaking the Databricks serving-endpoints API.

Client code imports only :mod:`llmops_nb.workspace.launcher`; everything else here is the
server program (``python -m llmops_nb.workspace serve``).
"""

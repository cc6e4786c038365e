"""Typed, validated configs: the serving endpoint (1:1 with the Databricks REST body) and the project.

Every validation failure is a `ConfigError` with one line: field path, value, what is allowed.
Only pydantic and yaml are imported here. Modules by concern: `errors` (one-line errors and the
base model), `providers` (external-model provider configs), `endpoint` (EndpointConfig and its
parts, REST bodies), `project` (ModelSpec, EvaluationConfig, ProjectConfig), `io` (YAML).
"""

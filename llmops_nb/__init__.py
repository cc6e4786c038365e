"""llmops-nb: register, deploy, serve and evaluate an LLM with MLflow, from notebooks.

Importing the package is cheap: mlflow, databricks-sdk, pandas and llama_cpp load only
when a function that needs them is called.
"""

from llmops_nb.errors import ConfigError, LlmopsError

__version__ = "0.1.0"
__all__ = ["ConfigError", "LlmopsError", "__version__"]

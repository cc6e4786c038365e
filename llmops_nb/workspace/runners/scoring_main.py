"""MLflow's scoring server (``uvicorn ... mlflow.pyfunc.scoring_server.app:app``) with its start
phases marked in its output: ``python -m llmops_nb.workspace.runners.scoring_main <uvicorn args>``.

MLflow's app module is replaced by :mod:`.scoring_app`: the same app over the same model, with
a streaming route beside ``/invocations`` (MLflow's server does not stream pyfunc models).

The runner reads the two marker lines to split a start into process start (Python and MLflow
imports) and model load (importing the app module loads the model, then uvicorn binds).
"""

from __future__ import annotations

import sys

IMPORTED = "llmops: imports done, loading the model"
MLFLOW_APP = "mlflow.pyfunc.scoring_server.app:app"
STREAMING_APP = "llmops_nb.workspace.runners.scoring_app:app"


def main() -> None:
    """Import what the server needs, say so, then run uvicorn with this process's arguments."""
    import mlflow.pyfunc.scoring_server  # noqa: F401  (not .app: importing it loads the model)
    import uvicorn

    print(IMPORTED, flush=True)
    sys.argv[0] = "uvicorn"
    sys.argv = [STREAMING_APP if a == MLFLOW_APP else a for a in sys.argv]
    uvicorn.main()


if __name__ == "__main__":
    main()

"""MLflow's scoring server (``uvicorn ... mlflow.pyfunc.scoring_server.app:app``) with its start
phases marked in its output: ``python -m llmops_nb.workspace.scoring_main <uvicorn args>``.

The runner reads the two marker lines to split a start into process start (Python and MLflow
imports) and model load (importing the app module loads the model, then uvicorn binds).
"""

from __future__ import annotations

import sys

IMPORTED = "llmops: imports done, loading the model"


def main() -> None:
    """Import what the server needs, say so, then run uvicorn with this process's arguments."""
    import mlflow.pyfunc.scoring_server  # noqa: F401  (not .app: importing it loads the model)
    import uvicorn

    print(IMPORTED, flush=True)
    sys.argv[0] = "uvicorn"
    uvicorn.main()


if __name__ == "__main__":
    main()

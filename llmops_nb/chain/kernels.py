"""Kernels started ahead of their step, so the chain does not wait for start-up and imports.

Each step notebook still runs in a fresh kernel of its own. What a cold kernel spends before
the notebook's first line does anything (the process start, then importing MLflow,
databricks-sdk, pandas, matplotlib: seconds per step) happens in the background while the
step before runs, mostly on the core that step leaves idle while it waits on the registry,
the endpoint or the network. The warm-up runs silently (no history, no outputs, nothing left
in the user namespace), so executed notebooks look as with a cold kernel. A warm-up that
fails only costs the head start: the step then gets a cold kernel from papermill.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any

# What each step imports ahead (``Step.warm_imports``), the steps that mostly wait
# (``Step.mostly_waits``) and what every step notebook imports first: the chain's table.
from llmops_nb.chain.table import COMMON_IMPORTS as COMMON
from llmops_nb.chain.table import PRELOAD, WAITING_STEPS

__all__ = ["COMMON", "PRELOAD", "WAITING_STEPS", "KernelWarmer", "kernel_manager", "shutdown", "warmup_code"]


def warmup_code(step: str) -> str:
    """Python run silently in the kernel: import the step's modules, leave no names behind."""
    modules = list(dict.fromkeys(COMMON + PRELOAD.get(step, ())))
    return (
        "def __llmops_warm(names):\n"
        "    import importlib\n"
        "    for name in names:\n"
        "        try:\n"
        "            importlib.import_module(name)\n"
        "        except Exception:\n"
        "            pass\n"
        f"__llmops_warm({modules!r})\n"
        "del __llmops_warm\n"
    )


class KernelWarmer:
    """Starts and warms one kernel per step, in chain order, on one background thread.

    Each warm-up shares the machine with a running step, so the schedule follows what the
    steps do: the first kernel at once; the next one when a step starts; and during a step
    that mostly waits (``WAITING_STEPS``: deploy waits for the scoring server) the one after
    that too, so the evaluate kernel (the heaviest imports) warms while deploy waits rather
    than during serve, whose decoding uses every core.

    ``take(step)`` waits for that step's kernel manager (None if its warm-up failed: the
    caller starts a cold kernel); ``release(km)`` shuts a taken kernel down in the background
    (it exits while the next step runs). ``close()`` (or leaving the ``with`` block) shuts
    down the kernels nobody took and waits until every kernel has exited.
    """

    def __init__(self, kernels: Mapping[str, str], *, cwd: Path, startup_timeout: float = 60.0) -> None:
        """``kernels``: step -> kernel name, in the order the steps run."""
        self.kernels = dict(kernels)
        self.cwd = Path(cwd)
        self.startup_timeout = startup_timeout
        self._futures: dict[str, Future] = {s: Future() for s in self.kernels}
        self._started = {s: threading.Event() for s in self.kernels}  # the step took its kernel
        self._closed = threading.Event()
        self._exiting: list[threading.Thread] = []
        self._thread = threading.Thread(target=self._run, name="llmops-kernel-warmer", daemon=True)
        self._thread.start()

    def take(self, step: str) -> Any | None:
        """The warm kernel manager for ``step``, or None (not planned, or its warm-up failed)."""
        future = self._futures.pop(step, None)
        if future is None:
            return None
        self._started[step].set()
        try:
            return future.result()
        except Exception:  # noqa: BLE001 - fall back to a cold kernel
            return None

    def release(self, km: Any) -> None:
        """Shut down a kernel ``take`` handed out, without waiting (``close`` waits)."""
        thread = threading.Thread(target=shutdown, args=(km,), name="llmops-kernel-shutdown")
        thread.start()
        self._exiting.append(thread)

    def __enter__(self) -> KernelWarmer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop warming; shut down the kernels nobody took; wait for every kernel to exit."""
        self._closed.set()
        for started in self._started.values():
            started.set()
        for future in self._futures.values():
            future.cancel()
        self._thread.join()
        for future in self._futures.values():  # nobody ran code in these: they go at once
            if future.done() and not future.cancelled() and future.exception() is None:
                shutdown(future.result(), now=True)
        self._futures.clear()
        for thread in self._exiting:
            thread.join()
        self._exiting.clear()

    def _run(self) -> None:
        order = list(self._futures)
        for k, (step, future) in enumerate(list(self._futures.items())):
            if k > 0:
                self._wait_for_reach(k, order)
            if self._closed.is_set() or not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(self._start(step))
            except BaseException as exc:  # noqa: BLE001 - reported through take()
                future.set_exception(exc)

    def _wait_for_reach(self, k: int, order: list[str]) -> None:
        """Block until a started step reaches step ``k``: the one before it, or a waiting
        step two before it."""
        while not self._closed.is_set():
            if self._started[order[k - 1]].is_set():
                return
            if k >= 2 and order[k - 2] in WAITING_STEPS and self._started[order[k - 2]].is_set():
                return
            self._started[order[k - 1]].wait(0.1)

    def _start(self, step: str) -> Any:
        import queue
        import time

        from jupyter_core.utils import run_sync

        km = kernel_manager(self.kernels[step])
        run_sync(km.start_kernel)(cwd=str(self.cwd))
        try:
            kc = km.blocking_client()
            kc.start_channels()
            try:
                kc.wait_for_ready(timeout=self.startup_timeout)
                msg_id = kc.execute(warmup_code(step), silent=True, store_history=False)
                deadline = time.monotonic() + self.startup_timeout * 5
                while True:  # in short waits: a close() (the chain refused its input) stops the warm-up
                    if self._closed.is_set():
                        raise _Closed(step)
                    try:
                        reply = kc.get_shell_msg(timeout=0.2)
                    except queue.Empty:
                        if time.monotonic() > deadline:
                            raise TimeoutError(f"the warm-up of the {step} kernel did not finish") from None
                        continue
                    if reply["parent_header"].get("msg_id") == msg_id:
                        break
            finally:
                kc.stop_channels()
        except BaseException:
            shutdown(km, now=True)
            raise
        return km


class _Closed(Exception):
    """The warmer was closed while this kernel warmed up (it is shut down, nobody takes it)."""


def kernel_manager(kernel_name: str) -> Any:
    """A manager for one step's kernel, talking over IPC sockets in Jupyter's runtime folder.

    Not TCP: a kernel on 127.0.0.1 ports takes connections from any local user holding the key,
    and warns on every start ("Kernel is running over TCP without encryption"); IPC sockets sit in
    the user's own runtime folder (mode 0700). The kernel starts when first used (nbclient starts
    a manager's kernel if it has none), and goes with :func:`shutdown`.
    """
    import uuid

    from jupyter_client.manager import AsyncKernelManager
    from jupyter_core.paths import jupyter_runtime_dir

    from llmops_nb.util.paths import private_dir

    runtime = private_dir(Path(jupyter_runtime_dir()))
    return AsyncKernelManager(kernel_name=kernel_name, transport="ipc", ip=str(runtime / f"llmops-{uuid.uuid4().hex[:12]}"))


def shutdown(km: Any, *, now: bool = False) -> None:
    """Shut a kernel down (quietly: it may be gone already); ``now``: kill it, for a kernel that
    only warmed up (it holds nothing of the user's), instead of asking it to exit."""
    from jupyter_core.utils import run_sync

    try:
        run_sync(km.shutdown_kernel)(now=now)
    except Exception:  # noqa: BLE001 - best effort at the end of a step
        pass

"""The form and the chat playground served by Voila, used in headless Chromium (Selenium).

One Voila server (module scope) serves papermill-parameterized copies of
``00_configure_endpoint`` (the form) and ``03_serve`` (with the playground) for two workspaces:
the local one with the real SmolLM2 (deploy from the form, chat two turns) and the fake
Databricks one (the errors a user meets, the layout at two widths, Stop).

Skipped only when /usr/bin/chromium is missing (`.ci/run` installs it with apt-get).
``LLMOPS_UPDATE_SCREENSHOT=1`` refreshes the README's screenshots in docs/ (else they go to a
temporary folder, so `make test` leaves the work tree clean).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from llmops_nb.workspace import launcher

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
UPDATE_DOCS = bool(os.environ.get("LLMOPS_UPDATE_SCREENSHOT"))
LOCAL_CONFIG, FAKE_CONFIG = ROOT / "configs" / "local.yml", ROOT / "tests" / "configs" / "fake-databricks.yml"
NEW_ENDPOINT = "browser-chat"  # the endpoint the user creates from the form on the local workspace
GONE = "browser-gone"  # a fake endpoint deleted while its playground is open
STATS = re.compile(r"(\d+) ms(?: \(first token \d+ ms\))? · (\d+) prompt \+ (\d+) completion tokens")

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="needs Debian's chromium and chromium-driver (/usr/bin/chromium missing; apt-get install chromium chromium-driver)",
)


@dataclass(frozen=True)
class Served:
    url: str
    log: Path
    shots: Path
    home: Path  # the local workspace's LLMOPS_HOME
    tracking_uri: str

    def page(self, name: str) -> str:
        return f"{self.url}voila/render/{name}.ipynb"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _parameterized(notebook: str, target: Path, **parameters: object) -> None:
    """A copy of ``notebooks/<notebook>`` with papermill's injected-parameters cell."""
    import nbformat
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    nb = load_notebook_node(str(ROOT / "notebooks" / notebook))
    nbformat.write(parameterize_notebook(nb, parameters, kernel_name="python3", language="python"), str(target))


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    from llmops_nb.testing import fake_workspace

    with fake_workspace(tmp_path_factory.mktemp("fake"), ready_seconds=0.3) as ws:
        yield ws


@pytest.fixture(scope="module")
def voila(tmp_path_factory, fake) -> Iterator[Served]:
    """One Voila server for the module: the notebooks' copies, each workspace's parameters."""
    tmp = tmp_path_factory.mktemp("voila")
    pages, home, db = tmp / "pages", tmp / "home", f"sqlite:///{tmp}/mlflow.db"
    pages.mkdir()
    _parameterized(
        "00_configure_endpoint.ipynb", pages / "form_local.ipynb", config_path=str(LOCAL_CONFIG), backend="local"
    )  # the default YAML file (not saved here): the screenshot shows it
    _parameterized(
        "03_serve.ipynb",
        pages / "serve_local.ipynb",
        config_path=str(LOCAL_CONFIG),
        backend="local",
        endpoint_name=NEW_ENDPOINT,
        prompts=["Say hi."],
        max_tokens=24,
        playground=True,
    )
    _parameterized(
        "00_configure_endpoint.ipynb",
        pages / "form_fake.ipynb",
        config_path=str(FAKE_CONFIG),
        backend="databricks",
        output_path=str(tmp / "fake-endpoint.yml"),
    )
    _parameterized(
        "03_serve.ipynb",
        pages / "serve_fake.ipynb",
        config_path=str(FAKE_CONFIG),
        backend="databricks",
        endpoint_name=GONE,
        prompts=["Say hi."],
        playground=True,
    )
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "MLFLOW_", "LLMOPS_"))}
    env.update(
        fake.env(),
        LLMOPS_HOME=str(home),
        MLFLOW_TRACKING_URI=db,
        MLFLOW_REGISTRY_URI=db,
        LLMOPS_PROJECT_DIR=str(ROOT),
        LLMOPS_RETRY_TIMEOUT_SECONDS="30",
    )
    from mlflow import MlflowClient

    MlflowClient(db).search_registered_models()  # create the store once, up front
    log = (tmp / "voila.log").open("w")
    voila_bin = Path(sys.executable).with_name("voila")
    proc = subprocess.Popen(
        [
            str(voila_bin),
            str(pages),
            "--no-browser",
            f"--port={port}",
            "--Voila.ip=127.0.0.1",
            "--show_tracebacks=True",
        ],  # a traceback would show (and fail the test)
        cwd=pages,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except urllib.error.HTTPError:  # it answers
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"voila did not start: {(tmp / 'voila.log').read_text()[-2000:]}")
                time.sleep(0.3)
        yield Served(url, tmp / "voila.log", ROOT / "docs" if UPDATE_DOCS else tmp, home, db)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        launcher.stop(home)  # the local workspace the notebooks started
        log.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
        "--window-size=1280,1900",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER) if CHROMEDRIVER.exists() else None), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def page(voila, browser, request):
    """Open a page by name (1280 px wide); on failure keep a screenshot and print Voila's log's end."""
    browser.set_window_size(1280, 1900)
    yield lambda name: browser.get(voila.page(name))
    report = getattr(request.node, "rep_call", None)  # set by tests/widgets/conftest.py
    if report is not None and report.failed:
        browser.save_screenshot(str(voila.log.with_name(f"failure-{request.node.name}.png")))
        print(voila.log.read_text()[-3000:])


# ---------------------------------------------------------------------------- helpers


def _wait(browser, seconds: float = 120):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, seconds, poll_frequency=0.1)


def _el(browser, css: str):
    from selenium.webdriver.common.by import By

    return browser.find_element(By.CSS_SELECTOR, css)


def _els(browser, css: str) -> list:
    from selenium.webdriver.common.by import By

    return browser.find_elements(By.CSS_SELECTOR, css)


def _loaded(browser, css: str, seconds: float = 600):  # a busy 2-core machine needs minutes
    """Wait until Voila has run the notebook and ``css`` is clickable."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    return _wait(browser, seconds).until(ec.element_to_be_clickable((By.CSS_SELECTOR, css)))


def _type(element, text: str) -> None:
    element.clear()
    element.send_keys(text)


def _field_error(browser, css: str) -> str:
    """The text of the form row holding ``css`` (the widget and its one-line error)."""
    from selenium.webdriver.common.by import By

    return _el(browser, css).find_element(By.XPATH, "./ancestor::*[contains(@class,'llmops-field')][1]").text


def _page_text(browser) -> str:
    return _el(browser, "body").text


def _no_traceback(browser) -> None:
    text = _page_text(browser)
    assert "Traceback" not in text, text[-2000:]


def _stats(browser) -> list[tuple[int, int, int]]:
    return [tuple(int(g) for g in STATS.search(e.text).groups()) for e in _els(browser, ".llmops-stats")]


# ---------------------------------------------------------------------------- local: deploy, then chat


@pytest.fixture(scope="module")
def registered(voila):
    """SmolLM2 registered in the registry the pages read (the register step, done up front)."""
    pytest.importorskip("llama_cpp")
    from llmops_nb.config.project import load_project_config
    from llmops_nb.models.registry import register_model

    name = load_project_config(LOCAL_CONFIG).model.name
    return register_model(name, tracking_uri=voila.tracking_uri, registry_uri=voila.tracking_uri)


@pytest.mark.model
@pytest.mark.timeout(1800)  # two kernels, the local workspace, a scoring server, four answers
def test_deploy_from_the_form_then_chat_in_the_playground(voila, browser, page, registered):
    """Fill the form for a new endpoint, Deploy, READY with its URL; then two turns in the playground."""
    page("form_local")
    name = _loaded(browser, ".llmops-endpoint-name input")
    _type(name, NEW_ENDPOINT)
    deploy = _el(browser, ".llmops-deploy")
    _wait(browser, 30).until(lambda d: deploy.is_enabled())
    started = time.monotonic()
    deploy.click()
    url = f"/serving-endpoints/{NEW_ENDPOINT}/invocations"
    _wait(browser, 600).until(
        lambda d: "READY" in _el(d, ".llmops-result").text or "#b00020" in _el(d, ".llmops-status").get_attribute("innerHTML")
    )
    seconds = time.monotonic() - started
    result = _el(browser, ".llmops-result").text
    assert "READY" in result and url in result, _el(browser, ".llmops-status").text
    assert f"{NEW_ENDPOINT}: created, NOT_UPDATING, READY" in _el(browser, ".llmops-status").text
    print(f"\nDeploy pressed -> READY and the URL in the page: {seconds:.1f} s")
    _no_traceback(browser)
    shot = voila.shots / "widget-form-deployed.png"
    assert _el(browser, ".llmops-endpoint-form").screenshot(str(shot)) and shot.stat().st_size > 10_000

    page("serve_local")
    prompt = _loaded(browser, ".llmops-prompt textarea")
    _type(prompt, "What is MLflow?")
    _el(browser, ".llmops-send").click()
    _wait(browser, 180).until(lambda d: len(_els(d, ".llmops-stats")) == 1)
    first = _els(browser, ".llmops-answer")[0].text
    assert first.startswith(f"{NEW_ENDPOINT}:") and len(first) > len(f"{NEW_ENDPOINT}:") + 3
    _type(prompt, "Say that again in one short sentence.")
    _el(browser, ".llmops-send").click()
    _wait(browser, 180).until(lambda d: len(_els(d, ".llmops-stats")) == 2)
    transcript = _el(browser, ".llmops-transcript").text
    assert transcript.index("What is MLflow?") < transcript.index("Say that again")
    (_, p1, c1), (_, p2, _) = _stats(browser)
    # the second request carried the first turn: its prompt holds the first question and answer
    assert c1 > 0 and p2 > p1 + c1 // 2, (p1, c1, p2)
    assert _el(browser, ".llmops-chat-status").text == ""
    _no_traceback(browser)
    shot = voila.shots / "widget-playground.png"
    assert _el(browser, ".llmops-playground").screenshot(str(shot)) and shot.stat().st_size > 10_000


# ---------------------------------------------------------------------------- fake: errors, layout, Stop


def _overflowing(browser) -> dict[str, list[str]]:
    """Visible widget labels cut short (scrollWidth > clientWidth), textareas hiding lines."""
    return browser.execute_script("""
        const shown = (e) => e.offsetParent !== null;
        const labels = [...document.querySelectorAll('.widget-label, .widget-label-basic, .widget-checkbox label')]
            .filter(shown).filter((e) => e.scrollWidth > e.clientWidth).map((e) => e.textContent);
        const areas = [...document.querySelectorAll('.llmops-endpoint-tags textarea')]
            .filter(shown).filter((e) => e.scrollHeight > e.clientHeight).map((e) => e.value);
        const wide = document.documentElement.scrollWidth > window.innerWidth ? ['page wider than the window'] : [];
        return {labels: labels, textareas: areas, page: wide};""")


def test_the_form_layout_then_a_bad_value_then_a_failed_deploy(fake, browser, page):
    """On one page load of the form (fake workspace), as a user goes: look, mistype, fix, deploy."""
    page("form_fake")
    tags = _loaded(browser, ".llmops-endpoint-tags textarea")
    _check_layout(browser, tags)
    _check_bad_value(browser)
    _check_failed_deploy(fake, browser)


def _check_layout(browser, tags) -> None:
    """No widget label cut, every tag line shown, at 1280 and at 800 px wide."""
    assert tags.get_attribute("value") == "project=llmops-nb"
    _el(browser, ".llmops-split input").click()  # the champion/challenger rows and the slider show
    tags.send_keys("\nstage=dev\nowner=data-science\nteam=ml")
    _wait(browser, 30).until(lambda d: tags.get_property("rows") >= 5)
    for width in (1280, 800):
        browser.set_window_size(width, 1900)
        _wait(browser, 10).until(lambda d, width=width: d.execute_script("return window.innerWidth") <= width)
        assert _overflowing(browser) == {"labels": [], "textareas": [], "page": []}, width
        assert "split traffic between a champion and a challenger" in _page_text(browser)
    browser.set_window_size(1280, 1900)
    _el(browser, ".llmops-split input").click()


def _check_bad_value(browser) -> None:
    """A bad endpoint name: its one-line error next to the field, Deploy disabled; fixed: valid."""
    from llmops_nb.config.project import load_project_config
    from llmops_nb.widgets import EndpointForm

    expected = EndpointForm(load_project_config(FAKE_CONFIG)).set(**{"endpoint.name": "browser chat!"})
    message = expected.errors["endpoint.name"]
    assert "\n" not in message and "browser chat!" in message
    name = _el(browser, ".llmops-endpoint-name input")
    _type(name, "browser chat!")
    _wait(browser, 30).until(lambda d: message in _field_error(d, ".llmops-endpoint-name input"))
    assert not _el(browser, ".llmops-deploy").is_enabled()
    _no_traceback(browser)
    _type(name, "browser-fail")
    _wait(browser, 30).until(lambda d: message not in _page_text(d))
    _el(browser, ".llmops-validate").click()
    _wait(browser, 30).until(lambda d: "valid: endpoint browser-fail" in _el(d, ".llmops-status").text)
    assert _el(browser, ".llmops-deploy").is_enabled()


def _check_failed_deploy(fake, browser) -> None:
    """The fake's UPDATE_FAILED: the deploy's one-line message in the status line, no traceback."""
    from llmops_nb.endpoints.waits import wait_ready
    from llmops_nb.errors import DeployFailed

    fake.set_faults(fail_next_update="doomed")  # the served entity named below fails to start
    e0 = ".llmops-endpoint-served_entities-0"
    _type(_el(browser, f"{e0}-name input"), "doomed")
    _type(_el(browser, f"{e0}-entity_version input"), "1")
    deploy = _el(browser, ".llmops-deploy")
    _wait(browser, 30).until(lambda d: deploy.is_enabled())
    deploy.click()
    _wait(browser, 120).until(lambda d: "UPDATE_FAILED" in _el(d, ".llmops-status").text)
    with pytest.raises(DeployFailed) as failed:  # the same wait, from here: the message a user must see
        wait_ready(fake.client(), "browser-fail", progress=False, poll_interval=0.1)
    message = str(failed.value)
    assert "\n" not in message and "served entity doomed failed" in message
    assert _el(browser, ".llmops-status").text == message
    assert _el(browser, ".llmops-result").text == ""
    _no_traceback(browser)


def test_stop_then_a_query_to_a_stopped_endpoint(fake, browser, page):
    from llmops_nb.chat import client
    from llmops_nb.config.endpoint import EndpointConfig
    from llmops_nb.endpoints.apply import deploy as apply_deploy
    from llmops_nb.endpoints.ops import delete_endpoint
    from llmops_nb.errors import QueryError

    w = fake.client()
    apply_deploy(
        w,
        EndpointConfig(name=GONE, served_entities=[{"entity_name": "m", "entity_version": "1"}]),
        progress=False,
        poll_interval=0.1,
    )
    page("serve_fake")
    prompt = _loaded(browser, ".llmops-prompt textarea")
    for width in (1280, 800):  # the playground's labels fit too
        browser.set_window_size(width, 1900)
        assert _overflowing(browser)["labels"] == [], width
    fake.set_faults(hang_seconds=5)
    _type(prompt, "a slow question")
    _el(browser, ".llmops-send").click()
    stop = _el(browser, ".llmops-stop")
    _wait(browser, 30).until(lambda d: stop.is_displayed())
    assert not _el(browser, ".llmops-send").is_enabled()
    stop.click()
    _wait(browser, 10).until(lambda d: _el(d, ".llmops-chat-status").text == "stopped")
    assert not stop.is_displayed() and _el(browser, ".llmops-send").is_enabled()
    assert prompt.get_attribute("value") == "a slow question" and _els(browser, ".llmops-answer") == []
    fake.set_faults(hang_seconds=0)

    delete_endpoint(w, GONE)  # `llmops-nb endpoints stop browser-gone`
    with pytest.raises(QueryError) as gone:
        client.chat(w, GONE, "still there?")
    message = str(gone.value)
    assert "\n" not in message and GONE in message
    _type(prompt, "still there?")
    _el(browser, ".llmops-send").click()
    _wait(browser, 60).until(lambda d: _el(d, ".llmops-chat-status").text == message)
    assert _els(browser, ".llmops-answer") == [] and _el(browser, ".llmops-send").is_enabled()
    _no_traceback(browser)

"""The dashboard in a real browser: Debian's chromium, driven by selenium through its
chromedriver, against a real ``python -m app serve`` (cnn, lstm, gan and alexnet).

Screenshots go to a folder under pytest's tmp dir and, when TORCHGATE_TEST_ARTIFACTS names a
folder, are copied there too (CI keeps them as artifacts)."""

from __future__ import annotations

import base64
import gzip
import io
import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from app.datasets import class_names
from tests.helpers.apps import ADMIN_TOKEN
from tests.helpers.programs import require_binary
from tests.helpers.repo import REPO_ROOT
from tests.helpers.servers import serve_process
from tests.helpers.weights import fashion_checkpoints

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.browser]

MODELS = ("cnn", "lstm", "gan", "alexnet")
WAIT_S = 60


@dataclass(frozen=True)
class Server:
    base: str
    log: Path


@pytest.fixture(scope="module")
def server(weights_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("dashboard-server")
    env = {
        "TORCHGATE_MODELS": ",".join(MODELS),
        "TORCHGATE_WEIGHTS_DIR": str(weights_dir),
        "TORCHGATE_CHECKPOINT_DIR": str(fashion_checkpoints(directory / "models")),
        "TORCHGATE_DOWNLOAD_WEIGHTS": "false",
        "TORCHGATE_VERIFY_WEIGHTS": "false",
        "TORCHGATE_ADMIN_TOKEN": ADMIN_TOKEN,
        "TORCHGATE_DEVICE": "cpu",
    }
    # the curves and samples the dashboard shows ship next to the checkpoints
    for artifact in (REPO_ROOT / "models").glob("*-*.png"):
        shutil.copy(artifact, directory / "models")
    log = directory / "server.log"
    with serve_process(env, log) as (port, _):
        yield Server(f"http://127.0.0.1:{port}", log)


@pytest.fixture(scope="module")
def driver() -> Iterator[webdriver.Chrome]:
    chromium = require_binary("chromium", "chromium")
    chromedriver = require_binary("chromedriver", "chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in [
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--window-size=1400,1900",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
    ]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    service = webdriver.ChromeService(executable_path=chromedriver)
    browser = webdriver.Chrome(options=options, service=service)
    browser.set_page_load_timeout(WAIT_S)
    try:
        yield browser
    finally:
        browser.quit()


@pytest.fixture(scope="module")
def screenshot(tmp_path_factory: pytest.TempPathFactory) -> Callable[[webdriver.Chrome, str], Path]:
    folder = tmp_path_factory.mktemp("dashboard-screenshots")
    keep = os.environ.get("TORCHGATE_TEST_ARTIFACTS")

    def take(browser: webdriver.Chrome, name: str) -> Path:
        path = folder / f"{name}.png"
        assert browser.save_screenshot(str(path))
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, Path(keep) / path.name)
        return path

    return take


def _open(browser: webdriver.Chrome, server: Server) -> None:
    browser.get(f"{server.base}/ui/")
    _wait(browser, lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))
    browser.get_log("browser")  # this page's messages only from here on
    browser.get_log("performance")


def _wait(browser: webdriver.Chrome, condition: Callable, timeout: float = WAIT_S):  # type: ignore[type-arg]
    return WebDriverWait(browser, timeout, poll_frequency=0.1).until(condition)


def _text(browser: webdriver.Chrome, element_id: str) -> str:
    return browser.find_element(By.ID, element_id).text


def _console_errors(browser: webdriver.Chrome) -> list[str]:
    return [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def _requested_urls(browser: webdriver.Chrome) -> list[str]:
    urls = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def _assert_all_local(urls: list[str], server: Server) -> None:
    outside = [u for u in urls if not u.startswith((server.base + "/", "data:", "blob:"))]
    assert not outside, f"requests left the server: {outside}"


def _test_image(server: Server, tmp_path: Path) -> tuple[Path, str]:
    """A Fashion-MNIST test image that the cnn classifies correctly, and its label."""
    folder = REPO_ROOT / "data" / "fashion-mnist"
    with gzip.open(folder / "t10k-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(folder / "t10k-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    names = class_names("fashion-mnist")
    for index in range(20):
        buffer = io.BytesIO()
        Image.fromarray(images[index], mode="L").save(buffer, format="PNG")
        answer = httpx.post(
            f"{server.base}/v1/models/cnn/predict",
            content=buffer.getvalue(),
            headers={"Content-Type": "image/png"},
            timeout=30,
        )
        assert answer.status_code == 200
        top1 = answer.json()["predictions"][0][0]["label"]
        if top1 == names[labels[index]]:
            path = tmp_path / f"fashion-mnist-test-{index}.png"
            path.write_bytes(buffer.getvalue())
            return path, top1
    raise AssertionError("the cnn got none of the first 20 test images right")


def test_dashboard_lists_every_model_with_no_errors_and_nothing_remote(
    driver: webdriver.Chrome, server: Server, screenshot: Callable
) -> None:
    driver.get(f"{server.base}/ui/")
    _wait(driver, lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))
    api = {m["name"]: m for m in httpx.get(f"{server.base}/v1/models").json()["models"]}
    rows = {
        row.get_attribute("data-model"): row
        for row in driver.find_elements(By.CSS_SELECTOR, "#models tbody tr")
    }
    assert set(rows) == set(MODELS)
    for name, row in rows.items():
        assert row.get_attribute("data-status") == api[name]["status"] == "ready"
        assert api[name]["parameters_sha256"][:16] in row.text
    _wait(driver, lambda b: len(b.find_elements(By.CSS_SELECTOR, "#artifacts img")) >= 3)
    screenshot(driver, "dashboard")
    assert _console_errors(driver) == []
    _assert_all_local(_requested_urls(driver), server)


def test_uploading_a_test_image_shows_its_label(
    driver: webdriver.Chrome, server: Server, screenshot: Callable, tmp_path: Path
) -> None:
    image, label = _test_image(server, tmp_path)
    _open(driver, server)
    Select(driver.find_element(By.ID, "predict-model")).select_by_value("cnn")
    driver.find_element(By.ID, "predict-file").send_keys(str(image))
    first = _wait(driver, lambda b: b.find_element(By.CSS_SELECTOR, "#predictions li"))
    assert first.get_attribute("data-label") == label
    assert "ms" in _text(driver, "predict-latency")
    screenshot(driver, "predict")
    assert _console_errors(driver) == []


def test_a_classified_image_shows_its_heatmap_beside_the_answer(
    driver: webdriver.Chrome, server: Server, screenshot: Callable, tmp_path: Path
) -> None:
    image, label = _test_image(server, tmp_path)
    _open(driver, server)
    Select(driver.find_element(By.ID, "predict-model")).select_by_value("cnn")
    driver.find_element(By.ID, "predict-file").send_keys(str(image))
    figure = _wait(
        driver,
        lambda b: (
            (shown := b.find_element(By.ID, "explain-figure")).is_displayed()
            and b.execute_script(
                "return arguments[0].naturalWidth", b.find_element(By.ID, "explain-heatmap")
            )
            > 0
            and shown
        ),
    )
    first = driver.find_element(By.CSS_SELECTOR, "#predictions li")
    # the class explained is the one just predicted, and it is the image's true label
    assert figure.get_attribute("data-label") == first.get_attribute("data-label") == label
    assert figure.get_attribute("data-method") == "integrated_gradients"
    assert label in _text(driver, "explain-caption")
    heatmap = driver.find_element(By.ID, "explain-heatmap")
    # the picture shown, read back through a canvas (the page's policy keeps fetch same-origin)
    data_url = driver.execute_script(
        """const img = arguments[0];
        const canvas = document.createElement("canvas");
        canvas.width = img.naturalWidth;
        canvas.height = img.naturalHeight;
        canvas.getContext("2d").drawImage(img, 0, 0);
        return canvas.toDataURL("image/png");""",
        heatmap,
    )
    shown = np.asarray(
        Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))).convert("RGB")
    )
    # exactly the server's heatmap of that image, drawn over it at 8x
    served = httpx.post(
        f"{server.base}/v1/models/cnn/explain",
        params={"format": "png", "method": "integrated_gradients"},
        content=image.read_bytes(),
        headers={"Content-Type": "image/png"},
        timeout=60,
    )
    assert served.status_code == 200
    picture = np.asarray(Image.open(io.BytesIO(served.content)))
    assert picture.shape == shown.shape == (224, 224, 3)
    assert np.abs(picture.astype(int) - shown.astype(int)).max() <= 2
    red = (picture[..., 0].astype(int) - picture[..., 2].astype(int)) > 60
    assert red.any()  # some heat is drawn
    box = heatmap.rect
    assert box["width"] > 100 and box["x"] > first.rect["x"]  # beside the answer
    screenshot(driver, "explain")
    assert _console_errors(driver) == []


def test_generating_eight_images_shows_a_grid(
    driver: webdriver.Chrome, server: Server, screenshot: Callable
) -> None:
    _open(driver, server)
    Select(driver.find_element(By.ID, "gan-label")).select_by_visible_text("Sneaker")
    n = driver.find_element(By.ID, "gan-n")
    n.clear()
    n.send_keys("8")
    driver.find_element(By.ID, "gan-generate").click()
    grid = _wait(
        driver,
        lambda b: (
            (img := b.find_element(By.ID, "gan-grid")).is_displayed()
            and b.execute_script("return arguments[0].naturalWidth", img) > 0
            and img
        ),
    )
    width, height = driver.execute_script(
        "return [arguments[0].naturalWidth, arguments[0].naturalHeight]", grid
    )
    assert width > 28 and height >= 28  # more than one 28x28 image, side by side
    assert grid.get_attribute("src").startswith("blob:")
    screenshot(driver, "generate")
    assert _console_errors(driver) == []


def test_admin_evaluates_reinitializes_and_reloads(
    driver: webdriver.Chrome, server: Server, screenshot: Callable
) -> None:
    _open(driver, server)
    Select(driver.find_element(By.ID, "admin-model")).select_by_value("cnn")
    driver.find_element(By.ID, "admin-token").send_keys(ADMIN_TOKEN)
    driver.find_element(By.CSS_SELECTOR, "#token-form button[type=submit]").click()
    _wait(driver, lambda b: _text(b, "token-state") == "token accepted")
    assert driver.execute_script("return sessionStorage.getItem('torchgate.adminToken')") == (
        ADMIN_TOKEN
    )
    original = _text(driver, "admin-sha")

    driver.find_element(By.ID, "evaluate").click()
    _wait(driver, lambda b: b.find_elements(By.ID, "eval-accuracy"), timeout=120)
    progress = driver.find_element(By.ID, "eval-progress")
    assert float(progress.get_attribute("value")) == 1.0
    assert "100%" in _text(driver, "eval-status")
    reported = httpx.get(
        f"{server.base}/admin/models/cnn/accuracy",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    ).json()["latest"]["accuracy"]
    assert _text(driver, "eval-accuracy") == f"{reported:.4f}"
    recorded = json.loads((REPO_ROOT / "models" / "cnn.json").read_text())["test_accuracy"]
    assert _text(driver, "recorded-accuracy") == f"{recorded:.4f}"
    assert len(driver.find_elements(By.CSS_SELECTOR, "#per-class li")) == 10
    rows = driver.find_elements(By.CSS_SELECTOR, "#confusion tbody tr")
    assert len(rows) == 10
    assert all(len(row.find_elements(By.TAG_NAME, "td")) == 10 for row in rows)
    screenshot(driver, "evaluate")

    driver.find_element(By.ID, "reinit-seed").send_keys("3")
    driver.find_element(By.ID, "reinitialize").click()
    _wait(driver, lambda b: _text(b, "params-result").startswith("reinitialize"))
    changed = _text(driver, "admin-sha")
    assert changed != original and len(changed) == 64
    screenshot(driver, "reinitialize")
    driver.find_element(By.ID, "reload").click()
    _wait(driver, lambda b: _text(b, "params-result").startswith("reload"))
    assert _text(driver, "admin-sha") == original

    Select(driver.find_element(By.ID, "precision-dtype")).select_by_value("bfloat16")
    driver.find_element(By.ID, "precision-trial").click()
    _wait(driver, lambda b: _text(b, "precision-verdict"), timeout=120)
    rows = driver.find_elements(By.CSS_SELECTOR, "#precision-table tbody tr")
    assert [row.find_element(By.TAG_NAME, "td").text for row in rows] == ["float32", "bfloat16"]
    assert _text(driver, "precision-verdict").startswith("promoted")  # within the 0.005 default
    cnn_dtype = '#models tr[data-model="cnn"] td.dtype'
    _wait(driver, lambda b: b.find_element(By.CSS_SELECTOR, cnn_dtype).text == "bfloat16")
    screenshot(driver, "precision")
    assert _console_errors(driver) == []
    urls = _requested_urls(driver)
    _assert_all_local(urls, server)
    assert not [u for u in urls if ADMIN_TOKEN in u]
    assert ADMIN_TOKEN not in server.log.read_text()


def test_the_gans_independent_judge_is_shown_next_to_its_recorded_consistency(
    driver: webdriver.Chrome, server: Server, screenshot: Callable
) -> None:
    figures = json.loads((REPO_ROOT / "models" / "gan.json").read_text())["independent_judge"]
    _open(driver, server)
    Select(driver.find_element(By.ID, "admin-model")).select_by_value("gan")
    driver.find_element(By.ID, "admin-token").send_keys(ADMIN_TOKEN)
    driver.find_element(By.CSS_SELECTOR, "#token-form button[type=submit]").click()
    _wait(driver, lambda b: b.find_elements(By.ID, "judge-consistency"))
    weakest = min(figures["per_class_consistency"])
    assert _text(driver, "judge-consistency") == (
        f"{figures['consistency']:.4f}, weakest class {weakest:.2f}"
    )
    diversity = figures["diversity"]
    assert _text(driver, "judge-diversity") == (
        f"{diversity['generated_mean']:.3f} / {diversity['real_mean']:.3f}"
    )
    screenshot(driver, "gan-judge")
    assert _console_errors(driver) == []


def test_a_wrong_token_shows_an_error(
    driver: webdriver.Chrome, server: Server, screenshot: Callable
) -> None:
    _open(driver, server)
    driver.execute_script("sessionStorage.clear()")
    driver.find_element(By.ID, "admin-token").send_keys("not-the-token")
    driver.find_element(By.CSS_SELECTOR, "#token-form button[type=submit]").click()
    error = _wait(
        driver, lambda b: (e := b.find_element(By.ID, "admin-error")).is_displayed() and e
    )
    assert "403" in error.text and "wrong admin token" in error.text
    driver.find_element(By.ID, "evaluate").click()
    _wait(driver, lambda b: "403" in _text(b, "admin-error"))
    # the page goes on working: the model list still refreshes
    assert len(driver.find_elements(By.CSS_SELECTOR, "#models tbody tr")) == len(MODELS)
    screenshot(driver, "wrong-token")
    # only the refused requests themselves, no script error
    unexpected = [m for m in _console_errors(driver) if "status of 403" not in m]
    assert unexpected == []


def test_docs_render_offline(
    driver: webdriver.Chrome, server: Server, screenshot: Callable
) -> None:
    driver.get(f"{server.base}/docs")
    _wait(driver, lambda b: len(b.find_elements(By.CSS_SELECTOR, ".opblock")) > 5)
    paths = [e.text for e in driver.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")]
    assert "/v1/models/{name}/predict" in paths
    screenshot(driver, "docs")
    driver.get(f"{server.base}/redoc")
    _wait(driver, lambda b: "/v1/models/{name}/predict" in b.page_source)
    # ReDoc's bundle links its vendor's logo from a CDN: the server serves it without that
    assert _console_errors(driver) == []
    _assert_all_local(_requested_urls(driver), server)

from pathlib import Path

import pytest

from tests.helpers.toy_servers import ToyServer
from torchgate_bench.images import garment_png
from torchgate_bench.load import LoadPlan, LoadTarget
from torchgate_bench.payload import multipart_body, write_body
from torchgate_bench.wrk import MARKER, find_wrk, lua_script, parse_output, run_wrk

# Captured from wrk 4.1.0 (Debian) driving the toy upload route with the generated script.
CAPTURED = """\
Running 1s test @ http://127.0.0.1:53507/upload
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   536.37us  526.66us   7.38ms   96.85%
    Req/Sec     8.54k   834.76     9.01k    90.91%
  9341 requests in 1.10s, 1.20MB read
Requests/sec:   8498.20
Transfer/sec:      1.09MB
TORCHGATE_WRK_JSON {"requests":9341,"duration_us":1099174,"bytes":1261168,\
"errors":{"connect":0,"read":2,"write":0,"status":7,"timeout":1},\
"latency_us":{"p50":439.0,"p90":520.0,"p99":3606.0,"mean":536.4,"max":7379.0}}
"""


def test_parse_reads_the_json_line_not_the_human_report() -> None:
    result = parse_output(CAPTURED, images_per_request=2)
    assert result.tool == "wrk"
    assert result.requests == 9341 + 3  # answered + socket errors (read, timeout)
    assert result.errors == 10  # 7 non-2xx/3xx answers + 3 socket errors
    assert result.error_kinds == {"read": 2, "status": 7, "timeout": 1}
    assert result.duration_s == pytest.approx(1.099174)
    assert result.latency.p50_ms == pytest.approx(0.439)
    assert result.latency.p99_ms == pytest.approx(3.606)
    assert result.images_per_s == pytest.approx((9344 - 10) * 2 / 1.099174)


def test_parse_without_the_json_line_says_so() -> None:
    with pytest.raises(ValueError, match="TORCHGATE_WRK_JSON"):
        parse_output("wrk: connection refused\n")


def test_script_reads_the_body_file_and_sets_the_content_type(tmp_path: Path) -> None:
    target = LoadTarget("http://x/", "POST", tmp_path / 'we"ird.bin', "multipart/form-data; b=1")
    script = lua_script(target)
    assert 'io.open("' + str(tmp_path) + "/we\\\"ird.bin\", 'rb')" in script
    assert 'wrk.headers["Content-Type"] = "multipart/form-data; b=1"' in script
    assert 'wrk.method = "POST"' in script
    assert "done = function(summary, latency, requests)" in script
    assert f'"{MARKER}"' in script


def test_get_script_has_no_body() -> None:
    script = lua_script(LoadTarget("http://x/healthz"))
    assert "wrk.body" not in script
    assert 'wrk.method = "GET"' in script


@pytest.mark.integration
@pytest.mark.skipif(find_wrk() is None, reason="wrk is not installed")
def test_wrk_sends_a_multipart_body_that_starlette_parses(
    toy_server: ToyServer, tmp_path: Path
) -> None:
    upload = garment_png()
    toy_server.expected_upload = (upload.filename, upload.content_type, upload.data)
    body = multipart_body([upload])
    target = LoadTarget(
        f"{toy_server.base_url}/upload",
        "POST",
        write_body(body, tmp_path / "body.bin"),
        body.content_type,
        images_per_request=1,
    )
    executable = find_wrk()
    assert executable is not None
    result = run_wrk(target, LoadPlan(concurrency=2, duration_s=1), tmp_path, executable)
    assert result.requests > 0
    assert result.errors == 0
    assert toy_server.counts["upload_bad"] == 0
    assert toy_server.counts["upload_good"] >= result.requests

import math

import pytest

from torchgate_bench.promdiff import diff, parse_exposition, server_stats

# every predict sample carries the route template, spelled out after the fact for line length
_PREDICT = 'route="/v1/models/{name}/predict"'

BEFORE = """\
# HELP torchgate_batch_size Items per forward pass.
# TYPE torchgate_batch_size histogram
torchgate_batch_size_bucket{le="1.0",model="alexnet"} 3.0
torchgate_batch_size_bucket{le="+Inf",model="alexnet"} 5.0
torchgate_batch_size_count{model="alexnet"} 5.0
torchgate_batch_size_sum{model="alexnet"} 12.0
torchgate_batch_size_bucket{le="+Inf",model="cnn"} 7.0
torchgate_batch_size_count{model="cnn"} 7.0
torchgate_batch_size_sum{model="cnn"} 70.0
# HELP torchgate_inference_seconds Time of one batched forward pass.
# TYPE torchgate_inference_seconds histogram
torchgate_inference_seconds_bucket{le="+Inf",model="alexnet"} 5.0
torchgate_inference_seconds_count{model="alexnet"} 5.0
torchgate_inference_seconds_sum{model="alexnet"} 0.5
# HELP torchgate_http_requests_total HTTP requests by model, route and status code.
# TYPE torchgate_http_requests_total counter
torchgate_http_requests_total{code="200",method="POST",model="alexnet",ROUTE} 12.0
torchgate_http_requests_total{code="200",method="GET",model="",route="/metrics"} 3.0
""".replace("ROUTE", _PREDICT)

AFTER = """\
# HELP torchgate_batch_size Items per forward pass.
# TYPE torchgate_batch_size histogram
torchgate_batch_size_bucket{le="1.0",model="alexnet"} 3.0
torchgate_batch_size_bucket{le="+Inf",model="alexnet"} 15.0
torchgate_batch_size_count{model="alexnet"} 15.0
torchgate_batch_size_sum{model="alexnet"} 52.0
torchgate_batch_size_bucket{le="+Inf",model="cnn"} 9.0
torchgate_batch_size_count{model="cnn"} 9.0
torchgate_batch_size_sum{model="cnn"} 200.0
# HELP torchgate_inference_seconds Time of one batched forward pass.
# TYPE torchgate_inference_seconds histogram
torchgate_inference_seconds_bucket{le="+Inf",model="alexnet"} 15.0
torchgate_inference_seconds_count{model="alexnet"} 15.0
torchgate_inference_seconds_sum{model="alexnet"} 1.5
# HELP torchgate_queue_wait_seconds Time an item waited in its model's batching queue.
# TYPE torchgate_queue_wait_seconds histogram
torchgate_queue_wait_seconds_bucket{le="+Inf",model="alexnet"} 40.0
torchgate_queue_wait_seconds_count{model="alexnet"} 40.0
torchgate_queue_wait_seconds_sum{model="alexnet"} 0.8
# HELP torchgate_http_requests_total HTTP requests by model, route and status code.
# TYPE torchgate_http_requests_total counter
torchgate_http_requests_total{code="200",method="POST",model="alexnet",ROUTE} 50.0
torchgate_http_requests_total{code="503",method="POST",model="alexnet",ROUTE} 2.0
torchgate_http_requests_total{code="200",method="GET",model="",route="/metrics"} 4.0
torchgate_http_requests_total{code="200",method="GET",model="alexnet",route="/v1/models/{name}"} 9.0
""".replace("ROUTE", _PREDICT)


def test_mean_batch_size_is_the_difference_of_sum_over_count() -> None:
    stats = server_stats(diff(parse_exposition(BEFORE), parse_exposition(AFTER)), "alexnet")
    assert stats.batches == 10
    assert stats.items == 40
    assert stats.mean_batch_size == pytest.approx(4.0)
    assert stats.mean_forward_ms == pytest.approx(100.0)
    assert stats.mean_queue_wait_ms == pytest.approx(20.0)  # absent before counts as zero
    assert stats.http_codes == {"200": 38, "503": 2}


def test_other_models_do_not_leak_in() -> None:
    stats = server_stats(diff(parse_exposition(BEFORE), parse_exposition(AFTER)), "cnn")
    assert stats.mean_batch_size == pytest.approx(65.0)
    assert stats.http_codes == {}


def test_a_model_without_batches_reports_nan_not_an_error() -> None:
    scrape = parse_exposition(AFTER)
    stats = server_stats(diff(scrape, scrape), "alexnet")
    assert stats.batches == 0
    assert math.isnan(stats.mean_batch_size)


def test_label_filters_select_subsets() -> None:
    scrape = parse_exposition(AFTER)
    assert scrape.total("torchgate_http_requests_total", model="alexnet") == 61.0
    assert scrape.total("torchgate_http_requests_total", code="200") == 63.0
    assert scrape.total("torchgate_http_requests_total", model="vgg16") == 0.0

"""SQS queue specifics: several processes on one queue (moto server), failures, config."""

from __future__ import annotations

import json
import multiprocessing
import socket
import time
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest

from huntaze_cli.config import Config
from huntaze_cli.errors import BackendError, ConfigError
from huntaze_cli.storage.queue import QueueItem
from tests.helpers import assert_gives_up_quickly

RECEIVERS = 3
ITEMS = 90


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _items(n: int) -> list[QueueItem]:
    return [
        QueueItem(f"cmp_1:fan_{i}", "cmp_1", f"acct_{i % 5}", f"fan_{i}", f"hi {i}")
        for i in range(n)
    ]


def _receive(endpoint: str, url: str, start: Barrier, out: str) -> None:
    """A receiver process: lease and ack until the queue stays empty; log what it got."""
    from huntaze_cli.storage.aws.sqs_queue import SQSQueue

    queue = SQSQueue(url, region="us-east-1", endpoint_url=endpoint)
    got: list[str] = []
    start.wait()  # all together, so they contend for the same messages
    idle = 0
    # A busy moto server may answer a receive with nothing while messages remain: only
    # a second of empty answers means the queue is drained.
    while idle < 20:
        # 60 s visibility: no lease can expire during the test, so a message received
        # twice would be one delivered to two receivers within the visibility timeout.
        leases = queue.lease(limit=10, lease_s=60)
        if not leases:
            idle += 1
            time.sleep(0.05)
            continue
        idle = 0
        for lease in leases:
            got.append(lease.item.key)
            assert queue.ack(lease)
    Path(out).write_text("\n".join(got))


@pytest.mark.slow
def test_receivers_in_several_processes_get_each_message_once(
    moto_server: str, tmp_path: Path
) -> None:
    import boto3

    from huntaze_cli.storage.aws.sqs_queue import SQSQueue

    client = boto3.client("sqs", region_name="us-east-1", endpoint_url=moto_server)
    url = client.create_queue(QueueName="deliveries")["QueueUrl"]
    queue = SQSQueue(url, region="us-east-1", endpoint_url=moto_server)
    assert queue.enqueue(_items(ITEMS)) == ITEMS
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(RECEIVERS)
    outs = [tmp_path / f"got_{n}.txt" for n in range(RECEIVERS)]
    procs = [ctx.Process(target=_receive, args=(moto_server, url, start, str(out))) for out in outs]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    got = [key for out in outs for key in out.read_text().split("\n") if key]
    assert sorted(got) == sorted(item.key for item in _items(ITEMS))  # each exactly once
    assert queue.depth() == {}
    queue.close()


def test_unreachable_endpoint_fails_fast() -> None:
    from huntaze_cli.storage.aws.sqs_queue import SQSQueue

    endpoint = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    url = f"{endpoint}/123456789012/deliveries"
    queue = SQSQueue(url, region="us-east-1", endpoint_url=endpoint)
    with pytest.raises(BackendError) as raised:
        queue.lease(limit=1, lease_s=30)
    assert_gives_up_quickly(queue._client)
    message = str(raised.value)
    assert url in message and "cannot reach SQS" in message and "endpoint_url" in message
    assert "\n" not in message


def test_missing_queue_is_a_backend_error_naming_it() -> None:
    import boto3
    from moto import mock_aws

    from huntaze_cli.storage.aws.sqs_queue import SQSQueue

    with mock_aws():
        url = boto3.client("sqs", region_name="us-east-1").create_queue(QueueName="gone")[
            "QueueUrl"
        ]
        queue = SQSQueue(url + "-nope", region="us-east-1", endpoint_url=None)
        with pytest.raises(BackendError, match="does not exist.*queue_url"):
            queue.enqueue(_items(1))


def test_missing_queue_url_is_a_config_error() -> None:
    from huntaze_cli.storage import open_queue

    config = Config.model_validate({"queue": {"backend": "sqs"}})
    with pytest.raises(ConfigError, match=r"queue\.queue_url"):
        open_queue(config)


def test_open_queue_picks_sqs() -> None:
    from huntaze_cli.storage import open_queue
    from huntaze_cli.storage.aws.sqs_queue import SQSQueue

    url = "https://sqs.eu-west-1.amazonaws.com/123456789012/deliveries.fifo"
    config = Config.model_validate({"queue": {"backend": "sqs", "queue_url": url}})
    queue = open_queue(config)
    assert isinstance(queue, SQSQueue)
    assert queue.fifo and queue.max_attempts == 5
    queue.close()


def test_unreadable_message_is_moved_to_dead_letters() -> None:
    import boto3
    from moto import mock_aws

    from huntaze_cli.storage.aws.sqs_queue import SQSQueue

    with mock_aws():
        client = boto3.client("sqs", region_name="us-east-1")
        url = client.create_queue(QueueName="mixed")["QueueUrl"]
        client.send_message(QueueUrl=url, MessageBody="not json")
        queue = SQSQueue(url, region="us-east-1", endpoint_url=None, scan_wait_s=0)
        assert queue.lease(limit=10, lease_s=30) == []
        assert queue.depth()["*"].dead == 1
        dead_url = client.get_queue_url(QueueName="mixed-dead")["QueueUrl"]
        (message,) = client.receive_message(QueueUrl=dead_url)["Messages"]
        letter = json.loads(message["Body"])
        assert letter["text"] == "not json" and letter["campaign_id"] == ""
        assert letter["key"].startswith("sqs:") and letter["last_error"]

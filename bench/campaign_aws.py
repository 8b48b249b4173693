"""Part 4 of bench/campaign.py: the same campaign on DynamoDB + SQS (one moto server).

``huntaze send-campaign FILE --no-wait --json`` as in part 1, but with the campaign
store, the ledger and the rate limiter on DynamoDB and the delivery queue on SQS, all on
a moto server started in this process (``huntaze_testing.moto_dynamodb`` gives it
DynamoDB's atomic conditional writes and per-item transaction cost). Printed beside
part 1's figures: wall time, messages per second, the CLI process's peak RSS against
the 200 MB target, and the checks (every message queued, counted by the store's
counters, and as many messages in the SQS queue). moto is far slower per request than
DynamoDB, so the rate is a floor for the code, not a forecast for AWS; the memory is
the process's own either way.
"""

from __future__ import annotations

import json
import logging
import socket
import sys
import time
from pathlib import Path

from campaign import (
    RSS_TARGET_MB,
    check,
    cli_env,
    huntaze_exe,
    info,
    line,
    run_measured,
    write_campaign,
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bench_campaign_aws(work: Path, recipients: int, timeout_s: float) -> bool:
    import boto3
    from moto.server import ThreadedMotoServer

    from huntaze_testing import moto_dynamodb

    print(f"\n4. send-campaign --no-wait, {recipients:,} recipients, DynamoDB + SQS (moto server)")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    undo = moto_dynamodb.install()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=_free_port(), verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        sqs = boto3.client(
            "sqs",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        )
        url = sqs.create_queue(QueueName=f"bench-{time.time_ns()}")["QueueUrl"]
        root = work / f"campaign-aws-{recipients}"
        campaign = write_campaign(root, recipients)
        env = cli_env(root)
        env.update(
            {
                "AWS_ACCESS_KEY_ID": "bench",
                "AWS_SECRET_ACCESS_KEY": "bench",
                "HUNTAZE_QUEUE__BACKEND": "sqs",
                "HUNTAZE_QUEUE__QUEUE_URL": url,
            }
        )
        for section in ("QUEUE", "LEDGER", "RATE_LIMIT", "CAMPAIGNS"):
            env[f"HUNTAZE_{section}__ENDPOINT_URL"] = endpoint
            env[f"HUNTAZE_{section}__REGION"] = "us-east-1"
            if section != "QUEUE":
                env[f"HUNTAZE_{section}__BACKEND"] = "dynamodb"
                env[f"HUNTAZE_{section}__CREATE_TABLES"] = "true"
                env[f"HUNTAZE_{section}__TABLE"] = f"bench-{section.lower()}"
        run = run_measured(
            [huntaze_exe(), "send-campaign", str(campaign), "--no-wait", "--json"], env, timeout_s
        )
        if run.returncode != 0:
            sys.stderr.write(run.stderr[-4000:])
            print(f"send-campaign exited {run.returncode}")
            return False
        report = json.loads(run.stdout)
        attributes = sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
    finally:
        server.stop()
        undo()
    info("backends", "campaigns, ledger, rate limit: DynamoDB; queue: SQS (standard)")
    line("wall time, whole command (Python start included)", run.wall_s, "s")
    line(
        "messages generated and queued per second, whole command", recipients / run.wall_s, "msg/s"
    )
    if run.first_stderr_s is not None and run.wall_s > run.first_stderr_s:
        stored = run.first_stderr_s
        line("  of which: validate, estimate and store the recipients", stored, "s")
        line(
            "  of which: generate and enqueue (after the store)",
            recipients / (run.wall_s - stored),
            "msg/s",
        )
    line(
        f"peak RSS, {recipients:,}-recipient campaign",
        run.peak_rss_mb,
        "MB",
        RSS_TARGET_MB,
        note="ru_maxrss of the process",
    )
    ok = run.peak_rss_mb <= RSS_TARGET_MB
    counts = report["counts"]
    ok &= check("messages queued (DynamoDB counters)", counts["queued"], recipients)
    ok &= check("messages dead or failed", counts["dead"] + counts["failed"], 0)
    ok &= check(
        "messages in the SQS queue", int(attributes["ApproximateNumberOfMessages"]), recipients
    )
    return ok

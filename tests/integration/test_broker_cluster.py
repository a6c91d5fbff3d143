"""AMQP_URL naming a cluster's nodes, against three private RabbitMQ nodes: a connection
goes to a node that answers, and when its node is killed it comes back on another one,
where the quorum queue still holds every confirmed message and takes new ones."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator

import aio_pika
import pytest

from broker.topology import Names, declare, open_connection, send_message
from runtime.settings import BrokerSettings
from tests.fault.services import PrivateRabbitCluster

pytestmark = pytest.mark.skipif(
    shutil.which("rabbitmq-server") is None, reason="needs rabbitmq-server for private nodes"
)


@pytest.fixture(scope="module")
def cluster() -> Iterator[PrivateRabbitCluster]:
    c = PrivateRabbitCluster().start()
    try:
        yield c
    finally:
        c.destroy()


def test_amqp_url_takes_a_list_of_nodes_and_refuses_a_wrong_one() -> None:
    ok = "amqp://u:p@mq1:5672/v, amqp://u:p@mq2:5672/v"
    assert BrokerSettings.model_validate({"database_url": "postgresql://x/y", "amqp_url": ok})
    with pytest.raises(ValueError, match="each node"):
        BrokerSettings.model_validate(
            {"database_url": "postgresql://x/y", "amqp_url": "amqp://mq1/,mq2:5672"}
        )


async def _publish(exchange: aio_pika.abc.AbstractExchange, ids: range) -> None:
    for i in ids:
        await exchange.publish(send_message(b"{}", i), routing_key="send")


async def test_a_connection_comes_back_on_another_node_when_its_node_dies(
    cluster: PrivateRabbitCluster,
) -> None:
    assert len(cluster.running()) == 3
    names = Names.from_prefix("cluster_test")
    connection = await open_connection(cluster.url, "test")
    try:
        channel = await connection.channel(publisher_confirms=True)
        topology = await declare(channel, names)
        await _publish(topology.exchange, range(1, 11))
        # The first node answered; kill it and keep it down.
        cluster.kill9(0)
        assert len(cluster.running()) == 2
        # The robust connection comes back on another node: publishing goes on there.
        async with asyncio.timeout(60):
            while True:
                try:
                    await _publish(topology.exchange, range(11, 21))
                    break
                except (aio_pika.exceptions.AMQPError, ConnectionError, RuntimeError):
                    await asyncio.sleep(0.5)
        got: set[int] = set()
        queue = await channel.get_queue(names.queue)
        async with asyncio.timeout(30):
            while len(got) < 20:
                msg = await queue.get(no_ack=False, fail=False, timeout=5)
                if msg is None:
                    await asyncio.sleep(0.2)
                    continue
                got.add(int(msg.message_id or 0))
                await msg.ack()
        assert got == set(range(1, 21))
    finally:
        await connection.close()
        cluster.restart(0)
    assert len(cluster.running()) == 3

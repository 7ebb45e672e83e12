"""Registration rules of the ws SDK, without a gateway."""

import logging

import pytest

from ampt_sandbox.runtime.bridge import Bridge
from ampt_sandbox.runtime.ws import SocketConnection, WebSocketApi


@pytest.fixture
def api():
    return WebSocketApi(Bridge())


async def handler(connection, message=None):
    pass


def test_on_call_form(api):
    api.on("message", handler)
    assert api.handlers["message"].handler is handler
    assert api.handlers["message"].timeout == 5.0


def test_on_decorator_form_with_timeout(api):
    @api.on("connected", timeout=2)
    async def connected(connection):
        pass

    assert api.handlers["connected"].handler is connected
    assert api.handlers["connected"].timeout == 2.0


def test_unknown_event_raises(api):
    with pytest.raises(ValueError, match="'connected', 'disconnected', 'message'"):
        api.on("open", handler)


def test_sync_handler_raises_type_error(api):
    def plain(connection):
        pass

    with pytest.raises(TypeError, match="async def"):
        api.on("message", plain)


def test_timeout_above_60_lowered_with_warning(api, caplog):
    with caplog.at_level(logging.WARNING, logger="ampt_sandbox.sdk"):
        api.on("message", handler, timeout=120)
    assert api.handlers["message"].timeout == 60.0
    assert "above the maximum" in caplog.text


@pytest.mark.parametrize("timeout", [0, -1, "5", True])
def test_invalid_timeout(api, timeout):
    with pytest.raises((TypeError, ValueError)):
        api.on("message", handler, timeout=timeout)


def test_second_registration_replaces_with_warning(api, caplog):
    async def first(connection, message):
        pass

    async def second(connection, message):
        pass

    api.on("message", first)
    with caplog.at_level(logging.WARNING, logger="ampt_sandbox.sdk"):
        api.on("message", second)
    assert api.handlers["message"].handler is second
    assert "replaces" in caplog.text


def test_for_id_builds_connection():
    connection = SocketConnection.for_id("L0SM9cOFvHcCIhw=")
    assert connection.connection_id == "L0SM9cOFvHcCIhw="
    assert connection.meta is None
    with pytest.raises(TypeError):
        SocketConnection.for_id(123)


async def test_sdk_call_outside_sandbox_explains(api):
    with pytest.raises(RuntimeError, match="only inside handlers run by 'ampt-sandbox dev'"):
        await api.send("L0SM9cOFvHcCIhw=", "x")


@pytest.mark.parametrize("bad", [123, None])
async def test_close_rejects_non_id(api, bad):
    with pytest.raises(TypeError, match="connection id"):
        await api.close(bad)

"""Token issue, disk cache, the once-a-minute rule, expiry refresh, secret masking."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest

from api.kis_auth import TokenManager, mask, mask_text, register_secret
from api.kis_settings import KISSettings
from framework.errors import AuthError, ConfigError
from framework.types import OrderRequest, OrderSide, OrderType
from tests.fakes import DEFAULT_ACCOUNT_NO, DEFAULT_APP_KEY, DEFAULT_APP_SECRET, FakeKISServer
from tests.fakes.harness import fast_fake, http_broker, make_settings

TOKEN_PATH = "/oauth2/tokenP"
PRICE_PATH = "/uapi/domestic-stock/v1/quotations/inquire-price"


def test_token_cached_on_disk_and_reused_after_restart(tmp_path: Path) -> None:
    fake = fast_fake()
    with FakeKISServer(fake) as server:
        from api.kis_broker import KISBroker

        settings = make_settings(tmp_path / "tokens", server.base_url)
        first = KISBroker(settings, clock=fake.clock)
        first.get_quote("005930")
        first.close()
        files = list((tmp_path / "tokens").iterdir())
        assert len(files) == 1
        assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
        assert stat.S_IMODE((tmp_path / "tokens").stat().st_mode) == 0o700

        restarted = KISBroker(settings, clock=fake.clock)  # new client, same cache dir
        restarted.get_quote("000660")
        restarted.close()

    assert fake.stats.by_path[TOKEN_PATH] == 1
    assert fake.stats.tokens_issued == 1


def test_cache_file_is_per_app_key_and_env(tmp_path: Path) -> None:
    base = make_settings(tmp_path)
    other_env = make_settings(tmp_path, env="real")
    other_key = make_settings(tmp_path, app_key="PSOTHERKEY00000000000000000000000000")
    paths = {TokenManager(s, http=None).cache_path for s in (base, other_env, other_key)}  # type: ignore[arg-type]
    assert len(paths) == 3
    assert all(DEFAULT_APP_KEY not in str(p) for p in paths)


def test_a_throttled_token_request_waits_a_minute_once(tmp_path: Path) -> None:
    fake = fast_fake()
    with http_broker(fake, tmp_path / "a") as (broker, server):
        broker.get_quote("005930")
        from api.kis_broker import KISBroker

        waits: list[float] = []

        def sleep(seconds: float) -> None:
            waits.append(seconds)
            fake.advance(seconds)

        other = KISBroker(
            make_settings(tmp_path / "b", server.base_url), clock=fake.clock, sleep=sleep
        )
        quote = other.get_quote("005930")  # no cache in dir b -> KIS says EGW00133 -> wait
        other.close()
    assert quote.price > 0
    assert fake.stats.token_throttled == 1
    assert sum(waits) == 60


def test_throttled_twice_is_an_auth_error(tmp_path: Path) -> None:
    fake = fast_fake()
    with http_broker(fake, tmp_path / "a") as (broker, server):
        broker.get_quote("005930")
        from api.kis_broker import KISBroker

        other = KISBroker(
            make_settings(tmp_path / "b", server.base_url), clock=fake.clock, sleep=lambda _s: None
        )
        with pytest.raises(AuthError) as err:  # the clock never moves: refused again
            other.get_quote("005930")
        other.close()
    assert err.value.code == "EGW00133"
    assert fake.stats.token_throttled == 2


def test_expired_token_is_refreshed_once_and_the_read_repeated(tmp_path: Path) -> None:
    fake = fast_fake()
    with http_broker(fake, tmp_path) as (broker, _):
        broker.get_quote("005930")
        fake.advance(61)
        fake.expire_tokens()
        quote = broker.get_quote("005930")
    assert quote.price > 0
    assert fake.stats.by_path[TOKEN_PATH] == 2
    assert fake.stats.by_path[PRICE_PATH] == 3  # first, rejected (EGW00123), repeated


def test_refresh_inside_the_minute_waits_for_the_rule_with_a_countdown(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake = fast_fake()
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        fake.advance(seconds)

    with FakeKISServer(fake) as server:
        from api.kis_broker import KISBroker

        broker = KISBroker(
            make_settings(tmp_path, server.base_url), clock=fake.clock, sleep=sleep
        )
        broker.get_quote("005930")
        fake.expire_tokens()  # server-side expiry 10 s after the token was issued
        fake.advance(10)
        with caplog.at_level(logging.WARNING, logger="api.kis_auth"):
            assert broker.get_quote("005930").price > 0
        broker.close()
    assert sum(waits) == 50  # the rest of the minute, never more
    assert fake.stats.by_path[TOKEN_PATH] == 2
    assert fake.stats.token_throttled == 0  # KIS never saw a request inside the minute
    countdown = [
        r.getMessage() for r in caplog.records if "one access token a minute" in r.getMessage()
    ]
    assert countdown[0].endswith("in 50 s")
    assert len(countdown) == 5


def test_a_token_request_that_never_connected_does_not_start_the_minute(
    tmp_path: Path,
) -> None:
    from api.kis_broker import KISBroker

    broker = KISBroker(make_settings(tmp_path, "http://127.0.0.1:9"), sleep=lambda _s: None)
    with pytest.raises(Exception) as err:
        broker.get_quote("005930")
    broker.close()
    message = str(err.value)
    assert "cannot connect to 127.0.0.1:9 (connection refused)" in message
    assert "once a minute" not in message


def test_token_renewed_before_expiry_without_a_rejection(tmp_path: Path) -> None:
    fake = fast_fake(enforce_market_hours=False)
    with http_broker(fake, tmp_path) as (broker, _):
        broker.get_quote("005930")
        fake.advance(hours=23, minutes=55)  # inside the 10-minute refresh margin
        broker.get_quote("005930")
    assert fake.stats.tokens_issued == 2
    assert fake.stats.by_path[PRICE_PATH] == 2  # no EGW00123 round trip


def test_secrets_never_reach_the_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    fake = fast_fake(auto_fill=False)
    with http_broker(fake, tmp_path, use_hashkey=True) as (broker, _):
        broker.get_balance()
        odno = broker.submit_order(
            OrderRequest("log-1", "005930", OrderSide.BUY, OrderType.LIMIT, 1, 50_000))
        broker.cancel_order(odno, "005930")
        fake.advance(61)
        fake.expire_tokens()
        broker.get_quote("005930")
        logging.getLogger("api.kis_http").info("echo %s", DEFAULT_APP_SECRET)
        tokens = [t for t in fake._tokens]
    text = caplog.text
    assert "CANO=" in text or "inquire-balance" in text  # the requests were logged
    for secret in (DEFAULT_APP_KEY, DEFAULT_APP_SECRET, DEFAULT_ACCOUNT_NO,
                   DEFAULT_ACCOUNT_NO[:8], *tokens):
        assert secret not in text
    assert repr(broker.settings).count(DEFAULT_APP_SECRET) == 0
    assert DEFAULT_APP_KEY not in repr(broker.settings) + repr(broker) + repr(broker.client)


def test_mask_helpers() -> None:
    assert mask("PSabcdefgh") == "PS***"
    assert mask("abc") == "***"
    register_secret("very-secret-value")
    assert mask_text("x very-secret-value y") == "x ve*** y"


def test_settings_from_env(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(f"KIS_APP_KEY={DEFAULT_APP_KEY}\nKIS_APP_SECRET={DEFAULT_APP_SECRET}\n"
                        "KIS_ACCOUNT_NO=12345678-01\n")
    settings = KISSettings.from_env(env_file, environ={"KIS_ENV": "REAL",
                                                      "KIS_BASE_URL": "http://127.0.0.1:1/"})
    assert settings.is_real
    assert settings.rate_limit_per_s == 18
    assert settings.rest_base_url == "http://127.0.0.1:1"
    assert (settings.cano, settings.acnt_prdt_cd) == ("12345678", "01")
    virtual = KISSettings.from_env(env_file, environ={})
    assert virtual.env == "virtual"
    assert virtual.rate_limit_per_s == 1
    assert "openapivts" in virtual.rest_base_url


@pytest.mark.parametrize(
    ("environ", "names"),
    [
        ({"KIS_APP_SECRET": "s" * 10, "KIS_ACCOUNT_NO": "12345678-01"}, "KIS_APP_KEY"),
        ({"KIS_APP_KEY": "k" * 10, "KIS_APP_SECRET": "s" * 10, "KIS_ACCOUNT_NO": "1234"},
         "KIS_ACCOUNT_NO"),
        ({"KIS_APP_KEY": "k" * 10, "KIS_APP_SECRET": "s" * 10, "KIS_ACCOUNT_NO": "12345678-01",
          "KIS_ENV": "paper"}, "KIS_ENV"),
    ],
)
def test_settings_errors_name_the_variable(environ: dict[str, str], names: str) -> None:
    with pytest.raises(ConfigError, match=names):
        KISSettings.from_env(None, environ=environ)

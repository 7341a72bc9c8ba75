"""The per-address launch rate limit."""

from gallery_hub.launch_limits import LaunchRateLimiter


def test_rate_limit_per_address_with_a_sliding_window():
    now = [0.0]
    limiter = LaunchRateLimiter(per_minute=2, clock=lambda: now[0])
    assert limiter.check("a") is None
    assert limiter.check("a") is None
    refusal = limiter.check("a")
    assert refusal.status == 429 and 1 <= refusal.retry_after_s <= 61
    assert limiter.check("b") is None  # another address has its own window
    now[0] = 61.0
    assert limiter.check("a") is None

"""Launch limits: per address per minute, per visitor, and for the whole gallery."""

from gallery_hub.launch_limits import LaunchRateLimiter, capacity_refusal


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


def test_capacity():
    assert capacity_refusal(0, max_servers=2, visitor_servers=0, max_per_visitor=3) is None
    full = capacity_refusal(2, max_servers=2, visitor_servers=0, max_per_visitor=3)
    assert full.status == 429 and full.retry_after_s > 0
    assert "capacity" in full.message
    mine = capacity_refusal(0, max_servers=9, visitor_servers=3, max_per_visitor=3)
    assert mine.status == 429 and "3 examples running" in mine.message

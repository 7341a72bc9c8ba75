"""The example's state as a small SVG badge, for READMEs (`/hub/gallery/<id>/badge.svg`)."""

from __future__ import annotations

from html import escape

COLORS = {
    "verified": "#2e9f45",
    "broken": "#d73a31",
    "incompatible": "#d73a31",
    "ready": "#1f6feb",
    "building": "#c69026",
    "not-built": "#6e7781",
}
CHAR_WIDTH = 6.6  # Verdana 11 px, near enough for short words


def badge_svg(label: str, message: str, state: str) -> str:
    """A two-part badge: `label | message`, the message colored by the state."""
    left = round(len(label) * CHAR_WIDTH + 12)
    right = round(len(message) * CHAR_WIDTH + 12)
    width = left + right
    color = COLORS.get(state, COLORS["not-built"])
    label, message = escape(label), escape(message)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="20" role="img" '
        f'aria-label="{label}: {message}"><title>{label}: {message}</title>'
        f'<rect width="{left}" height="20" fill="#555"/>'
        f'<rect x="{left}" width="{right}" height="20" fill="{color}"/>'
        '<g fill="#fff" text-anchor="middle" font-family="Verdana,DejaVu Sans,sans-serif" '
        'font-size="11">'
        f'<text x="{left / 2}" y="14">{label}</text>'
        f'<text x="{left + right / 2}" y="14">{message}</text></g></svg>'
    )

"""Accessibility and layout checks of a page in the real browser (tests/support/browser.py).

- `axe_violations`: axe-core (the `axe.min.js` that the PyPI package axe-playwright-python ships,
  a dev extra: nothing is fetched at test time) injected into the page and run with its default
  rules (WCAG 2 A/AA and best practices); one line per violation and element.
- `sideways_overflow`: how many CSS pixels the document scrolls sideways (0: none).
- `focus_ring_contrast`: the contrast ratio (WCAG) of the focused element's outline against the
  background behind it.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any


@cache
def axe_script() -> str:
    """The source of axe-core, from the installed axe-playwright-python package."""
    import axe_playwright_python

    return (Path(axe_playwright_python.__file__).parent / "axe.min.js").read_text()


def axe_violations(page: Any) -> list[str]:
    """axe-core's violations on the page as `rule (impact): selector`, one per element."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(axe_script())
    found = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        ".map(v => v.nodes.map(n => `${v.id} (${v.impact}): ${n.target.join(' ')}`)).flat()"
    )
    return [str(line) for line in found]


def sideways_overflow(page: Any) -> int:
    """CSS pixels by which the page is wider than the window (0 when it never scrolls sideways)."""
    return int(
        page.evaluate(
            "() => Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"
            " - document.documentElement.clientWidth"
        )
    )


_CONTRAST = """
(element) => {
  const rgb = (text) => (text.match(/[\\d.]+/g) || []).map(Number);
  const luminance = ([r, g, b]) => {
    const lin = (c) => {
      c /= 255;
      return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
    };
    return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
  };
  const style = getComputedStyle(element);
  if (style.outlineStyle === 'none' || parseFloat(style.outlineWidth) < 2) return 0;
  let node = element.parentElement, behind = [255, 255, 255];
  while (node) {
    const color = rgb(getComputedStyle(node).backgroundColor);
    if (color.length === 3 || (color.length === 4 && color[3] > 0)) {
      behind = color.slice(0, 3);
      break;
    }
    node = node.parentElement;
  }
  const [a, b] = [luminance(rgb(style.outlineColor)), luminance(behind)];
  return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
}
"""


def focus_ring_contrast(page: Any, selector: str) -> float:
    """Focus `selector` from the keyboard's point of view and measure its ring's contrast (0 when
    it has no ring of at least 2 px)."""
    locator = page.locator(selector).first
    locator.focus()
    return float(locator.evaluate(_CONTRAST))

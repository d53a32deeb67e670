"""A real git repository built in a test: a small monorepo whose deployed range holds several commits, one bad.

History (oldest first): `base` (checkout and cart services, tests), `feature` (checkout: a discount helper at the
end of handlers.py), `cart` (another service), `bad` (checkout: reads item["qty"], which orders do not carry:
KeyError), `docs` (checkout: two header lines, so every line of the deployed file sits two lower than in `bad`).
The previous deploy ran `base`; the deploy under suspicion runs `docs`.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

HANDLERS = "services/checkout/handlers.py"
BASE_HANDLERS = '''"""Checkout handlers."""

import logging

log = logging.getLogger("checkout")
TAX_RATE = 0.2


def subtotal(items):
    """Sum of price x quantity."""
    return sum(item["price"] * item["quantity"] for item in items)


def total(items):
    """Subtotal with tax."""
    amount = subtotal(items)
    return round(amount * (1 + TAX_RATE), 2)


def checkout(order_id, items):
    """The amount to charge for an order."""
    try:
        return total(items)
    except Exception:
        log.exception("checkout total failed for order %s", order_id)
        raise
'''
TESTS = '''import unittest

from services.checkout.handlers import checkout


class CheckoutTest(unittest.TestCase):
    def test_total_with_tax(self):
        self.assertEqual(checkout("o-1", [{"price": 10.0, "quantity": 2}]), 24.0)


if __name__ == "__main__":
    unittest.main()
'''
DISCOUNT = '''

def discount(amount, code):
    """10% off with a known code."""
    return round(amount * 0.9, 2) if code == "WELCOME10" else amount
'''
CART = '''"""Cart handlers."""


def count(items):
    return sum(item["quantity"] for item in items)
'''


@dataclass(frozen=True)
class ShopRepo:
    """The repository and the commits of its history."""

    path: Path
    base: str
    feature: str
    cart: str
    bad: str
    docs: str

    def line_of(self, text: str, rev: str = "HEAD", path: str = HANDLERS) -> int:
        """The 1-based line of `text` in a file at a revision."""
        content = git(self.path, "show", f"{rev}:{path}")
        return next(n for n, line in enumerate(content.splitlines(), start=1) if text in line)


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "Dev", "GIT_AUTHOR_EMAIL": "dev@shop.example",
           "GIT_COMMITTER_NAME": "Dev", "GIT_COMMITTER_EMAIL": "dev@shop.example"}
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True,
                          env=env).stdout


def _commit(repo: Path, files: dict[str, str], message: str, date: str, author: str) -> str:
    for name, text in files.items():
        target = repo / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    git(repo, "add", "-A")
    name, email = author.split(" <")
    env = {"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
    subprocess.run(["git", "-C", str(repo), "-c", f"user.name={name}", "-c", f"user.email={email.rstrip('>')}",
                    "commit", "-q", "--no-gpg-sign", "-m", message], check=True, env={**os.environ, **env},
                   capture_output=True)
    return git(repo, "rev-parse", "HEAD").strip()


def build_shop_repo(path: Path) -> ShopRepo:
    """Create the repository at `path` (an empty or missing folder)."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "-c", "init.defaultBranch=main", "init", "-q")
    base = _commit(path, {HANDLERS: BASE_HANDLERS, "services/__init__.py": "", "services/checkout/__init__.py": "",
                          "services/cart/__init__.py": "", "services/cart/handlers.py": CART,
                          "tests/__init__.py": "", "tests/test_checkout.py": TESTS},
                   "checkout and cart services", "2026-11-18T09:00:00+00:00", "Ana Souza <ana@shop.example>")
    feature = _commit(path, {HANDLERS: BASE_HANDLERS + DISCOUNT}, "checkout: discount codes",
                      "2026-11-19T10:00:00+00:00", "Mei Lin <mei@shop.example>")
    cart = _commit(path, {"services/cart/handlers.py": CART.replace("def count", "def item_count")},
                   "cart: rename count", "2026-11-20T08:00:00+00:00", "Tomas Ortega <tomas@shop.example>")
    bad_text = (BASE_HANDLERS + DISCOUNT).replace('item["quantity"]', 'item["qty"]')
    bad = _commit(path, {HANDLERS: bad_text}, "checkout: shorter item field names",
                  "2026-11-20T09:30:00+00:00", "Jonas Weber <jonas@shop.example>")
    docs = _commit(path, {HANDLERS: bad_text.replace('"""Checkout handlers."""',
                                                     '"""Checkout handlers.\n\nPrices are in euros.\n"""')},
                   "checkout: document the currency", "2026-11-20T10:00:00+00:00", "Mei Lin <mei@shop.example>")
    return ShopRepo(path=path, base=base, feature=feature, cart=cart, bad=bad, docs=docs)


def traceback_text(repo: ShopRepo, prefix: str = "/app") -> str:
    """The traceback the deployed service logs (paths as the container sees them)."""
    def frame(text: str, function: str) -> str:
        return f'  File "{prefix}/{HANDLERS}", line {repo.line_of(text)}, in {function}\n    {text.strip()}\n'

    return ("Traceback (most recent call last):\n" + frame("return total(items)", "checkout")
            + frame("amount = subtotal(items)", "total")
            + frame('return sum(item["price"] * item["qty"]', "subtotal") + "KeyError: 'qty'")

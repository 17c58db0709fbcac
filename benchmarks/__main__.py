"""``make bench``: run every benchmark and print its figure beside its baseline."""

from __future__ import annotations

from . import domain, erp, holds


def main() -> None:
    for name, run in (("domain apply", domain.main), ("ERP netting", erp.main), ("hold decisions", holds.main)):
        print(f"== {name}")
        run()


main()

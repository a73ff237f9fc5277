"""A small demo dealer network that `make run` seeds into an empty lead database, so the
first lead submitted on a fresh checkout routes somewhere.

Two brands ("Marque" and its EV sub-brand "Lumen") across Beijing, Shanghai, Guangdong
(Guangzhou, Shenzhen) and Sichuan (Chengdu). The mix exercises every routing branch:
two dealers in one city (round-robin), a brand sold by only some dealers, a province
with two cities (city first, then province), and one inactive dealer.
"""

from __future__ import annotations

from services.lead.domain.model import Dealer

MARQUE = "Marque"
LUMEN = "Lumen"

DEMO_DEALERS: tuple[Dealer, ...] = (
    Dealer("D-BJ-01", "Marque Beijing Chaoyang", (MARQUE, LUMEN), "Beijing", "Beijing", 40),
    Dealer("D-BJ-02", "Marque Beijing Haidian", (MARQUE,), "Beijing", "Beijing", 30),
    Dealer("D-SH-01", "Marque Shanghai Pudong", (MARQUE, LUMEN), "Shanghai", "Shanghai", 40),
    Dealer("D-SH-02", "Lumen Studio Shanghai Minhang", (LUMEN,), "Shanghai", "Shanghai", 20),
    Dealer("D-GZ-01", "Marque Guangzhou Tianhe", (MARQUE,), "Guangdong", "Guangzhou", 30),
    Dealer("D-SZ-01", "Marque Shenzhen Nanshan", (MARQUE, LUMEN), "Guangdong", "Shenzhen", 30),
    Dealer("D-CD-01", "Marque Chengdu Jinjiang", (MARQUE,), "Sichuan", "Chengdu", 25),
    Dealer("D-CD-02", "Marque Chengdu Wuhou (closed)", (MARQUE,), "Sichuan", "Chengdu", 25, False),
)


def demo_dealers() -> list[Dealer]:
    """The demo network, as a fresh list (the caller may sort or filter it)."""
    return list(DEMO_DEALERS)

"""The sales service (DESIGN.md §2: servicer, engine, domain, store)."""

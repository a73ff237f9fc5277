"""The outbound STAR client of the dealers' DMSs (httpx, behind mesh.breaker)."""

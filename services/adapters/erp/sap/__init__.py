"""SAP over HTTP: the OData V2 client (httpx), the backend the engine calls (lookup-before-
retry, the breaker) and the simulator that stands in for SAP locally and in tests."""

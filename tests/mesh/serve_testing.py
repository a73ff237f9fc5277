"""`python -m tests.mesh.serve_testing`: the TestingService as a real service process
(mesh.server.run), for the SIGTERM test and the benchmark."""

from __future__ import annotations

from mesh.server import ServiceSpec, run
from tests.mesh.testing_servicer import TestingServicer, testing_servicer


def main() -> None:
    """Serve until SIGTERM/SIGINT (settings from the environment, as service "lead")."""
    run(ServiceSpec("lead", [testing_servicer(TestingServicer())]))


if __name__ == "__main__":
    main()

"""`python -m services.sales`: serve the sales service until SIGTERM/SIGINT."""

from mesh.server import run
from services.sales.app import build_spec

run(build_spec())

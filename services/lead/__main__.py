"""`python -m services.lead`: serve the lead service until SIGTERM/SIGINT."""

from mesh.server import run
from services.lead.app import build_spec

run(build_spec())

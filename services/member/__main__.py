"""`python -m services.member`: serve the member service until SIGTERM/SIGINT."""

from mesh.server import run
from services.member.app import build_spec

run(build_spec())

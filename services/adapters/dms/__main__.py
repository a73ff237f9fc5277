"""`python -m services.adapters.dms`: serve the DMS adapter (gRPC, and the inbound STAR
endpoint) until SIGTERM/SIGINT, with the DMS simulator beside it unless
MARQUE_DMS_ADAPTER_DEALER_URLS or _DEFAULT_URL names real dealer systems."""

import os

from mesh.server import run
from services.adapters.dms.app import build_spec
from services.adapters.dms.local import simulator_for

with simulator_for(os.environ):
    run(build_spec())
